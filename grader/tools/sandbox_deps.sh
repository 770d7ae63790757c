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
# 3. cgroup v2, as a normal user: a systemd user manager that delegates control
#    groups, for the whole-submission limits.
#
# APPARMOR_USERNS, APPARMOR_D and CGROUP2 name the sysctl, the profile folder
# and the cgroup v2 mount; the tests point them elsewhere.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
restrict=${APPARMOR_USERNS:-/proc/sys/kernel/apparmor_restrict_unprivileged_userns}
profiles=${APPARMOR_D:-/etc/apparmor.d}
cgroup2=${CGROUP2:-/sys/fs/cgroup}
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

restricted() { [ -r "$restrict" ] && [ "$(cat "$restrict")" = 1 ]; }

bwrap_step() {
    if sandbox_works; then
        # Root is never restricted, but whoever grades as a normal user (the hub's grader
        # account, an instructor) is: as root, install the profile wherever the restriction is on.
        if [ -n "$sudo" ] || ! restricted || cmp -s "$here/apparmor-bwrap" "$profiles/bwrap"; then
            say "bubblewrap works for $(id -un)."
            return 0
        fi
        say "bubblewrap works for root, but not for normal users such as the hub's grader account."
    fi
    if restricted; then
        say "AppArmor forbids normal users to create user namespaces here ($restrict = 1), which bubblewrap needs."
        say "Installing an AppArmor profile that allows it for /usr/bin/bwrap only:"
        say "    $sudo install -m 644 $here/apparmor-bwrap $profiles/bwrap"
        say "    $sudo apparmor_parser -r $profiles/bwrap"
        $sudo install -m 644 "$here/apparmor-bwrap" "$profiles/bwrap"
        $sudo apparmor_parser -r "$profiles/bwrap"
        if sandbox_works; then
            say "bubblewrap works for $(id -un) now."
            return 0
        fi
    fi
    say "bubblewrap still cannot start a sandbox for $(id -un):"
    bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true || true
    say "see docs/grading.md, 'Machines the grader runs on', for what it needs."
    return 1
}

# Whole-submission limits: on cgroup v2 a normal user grades inside a control
# group that systemd delegates (grader/tools/delegated.sh), which needs the
# user's own systemd manager; `loginctl enable-linger` keeps one running.
delegated() {
    XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/run/user/$(id -u)} \
        systemd-run --user --scope --quiet -p Delegate=yes -- sh -c \
        'cat "/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup)/cgroup.controllers"' 2>/dev/null
}

delegation_step() {
    if [ "$(id -u)" = 0 ] || [ ! -f "$cgroup2/cgroup.controllers" ] || ! command -v systemd-run >/dev/null; then
        return 0
    fi
    if ! delegated >/dev/null; then
        say "systemd runs no user manager for $(id -un), so it cannot delegate a control group; starting one:"
        say "    $sudo loginctl enable-linger $(id -un)"
        $sudo loginctl enable-linger "$(id -un)"
        sleep 2
    fi
    controllers=$(delegated || true)
    for controller in pids memory cpu; do
        case " $controllers " in
            *" $controller "*) ;;
            *) say "systemd does not delegate the $controller controller to $(id -un) (it delegates: ${controllers:-nothing})."
               say "Grade as root, or with --SandboxedExecute.whole_submission_limits=False (see docs/grading.md)."
               return 1 ;;
        esac
    done
    say "systemd delegates control groups to $(id -un) (make demo, test and bench use them)."
}

bwrap_step
delegation_step
