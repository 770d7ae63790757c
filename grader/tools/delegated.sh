#!/bin/sh
# Runs its arguments where grading can give each kernel its own control group
# (whole-submission limits, grader/engine/cgroups.py).  As root, or on cgroup
# v1, or where this process's group is already ours to divide, that is right
# here.  A normal user on cgroup v2 gets a group delegated by systemd:
#     systemd-run --user --scope -p Delegate=yes -- COMMAND
# The Makefile starts `make demo`, `make test` and `make bench` through it.
set -eu
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
if [ "$(id -u)" = 0 ] || [ ! -f /sys/fs/cgroup/cgroup.controllers ] || [ -z "$own" ] \
    || [ -w "/sys/fs/cgroup$own/cgroup.procs" ] || ! command -v systemd-run >/dev/null; then
    exec "$@"
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/run/user/$(id -u)}"
exec systemd-run --user --scope --quiet -p Delegate=yes -- "$@"
