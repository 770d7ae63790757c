#!/bin/sh
# `make sandbox-deps`: what the grading sandbox needs on this machine, installed
# or set up with sudo (when not root), each step said before it is done.
#
# 1. bubblewrap and prlimit (util-linux), from apt.
# 2. Ubuntu 23.10 and later (GitHub's ubuntu-24.04 runners too): AppArmor lets a
#    normal user create the user namespaces bubblewrap needs only under a
#    profile that allows it; grader/tools/apparmor-bwrap is such a profile for
#    /usr/bin/bwrap alone, installed only when bwrap fails without it.
#
# APPARMOR_USERNS and APPARMOR_D name the sysctl and the profile folder; the
# tests point them elsewhere.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
restrict=${APPARMOR_USERNS:-/proc/sys/kernel/apparmor_restrict_unprivileged_userns}
profiles=${APPARMOR_D:-/etc/apparmor.d}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

say() { echo "sandbox-deps: $*"; }

if [ "$(uname -s)" != Linux ]; then
    say "the grading sandbox (bubblewrap) exists only on Linux, so this machine cannot grade untrusted notebooks."
    say "Grade on a Linux machine or on the course hub; see README.md, 'Grading on a Mac or on Windows'."
    exit 1
fi

if ! command -v bwrap >/dev/null || ! command -v prlimit >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        say "install bubblewrap and prlimit (util-linux) with this system's package manager, then run me again."
        exit 1
    fi
    say "installing bubblewrap and util-linux (prlimit) with apt-get${sudo:+ (sudo)}"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq bubblewrap util-linux
fi

# The same kind of sandbox as the grader's: every namespace, a read-only root.
sandbox_works() { bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true 2>/dev/null; }

if sandbox_works; then
    say "bubblewrap works for $(id -un)."
    exit 0
fi
if [ -r "$restrict" ] && [ "$(cat "$restrict")" = 1 ]; then
    say "AppArmor forbids normal users to create user namespaces here ($restrict = 1), which bubblewrap needs."
    say "Installing an AppArmor profile that allows it for /usr/bin/bwrap only:"
    say "    $sudo install -m 644 $here/apparmor-bwrap $profiles/bwrap"
    say "    $sudo apparmor_parser -r $profiles/bwrap"
    $sudo install -m 644 "$here/apparmor-bwrap" "$profiles/bwrap"
    $sudo apparmor_parser -r "$profiles/bwrap"
    if sandbox_works; then
        say "bubblewrap works for $(id -un) now."
        exit 0
    fi
fi
say "bubblewrap still cannot start a sandbox for $(id -un):"
bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true || true
say "see docs/grading.md, 'Machines the grader runs on', for what it needs."
exit 1
