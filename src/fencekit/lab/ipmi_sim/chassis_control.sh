#!/bin/sh
# Chassis-control hook for ipmi_sim, called through popen as
#   chassis_control.sh STATEFILE get power
#   chassis_control.sh STATEFILE set power 0|1 [reset X] [boot X] ...
# "get" prints "power:0|1". Every "set" is appended to STATEFILE.log, so a
# test can count the commands that reached the BMC. When STATEFILE.kill
# holds a PID, powering off kills that process: the node's own fencer
# dies with its node. When STATEFILE.fail holds N > 0, the next N calls
# fail (the BMC answers completion code 0xff), to test transient errors.
state="$1"
op="$2"
shift 2
[ -f "$state" ] || echo 1 >"$state"
if [ -s "$state.fail" ]; then
    left=$(cat "$state.fail")
    if [ "$left" -gt 0 ]; then
        echo $((left - 1)) >"$state.fail"
        exit 1
    fi
fi
case "$op" in
get)
    for what in "$@"; do
        case "$what" in
        power) echo "power:$(cat "$state")" ;;
        boot) echo "boot:default" ;;
        *) exit 1 ;;
        esac
    done
    ;;
set)
    while [ $# -ge 2 ]; do
        what="$1"
        value="$2"
        shift 2
        case "$what" in
        power)
            echo "$value" >"$state"
            if [ "$value" = 0 ] && [ -s "$state.kill" ]; then
                kill -9 "$(cat "$state.kill")" 2>/dev/null
            fi
            ;;
        shutdown) echo 0 >"$state" ;;
        identify) [ $# -ge 1 ] && shift ;;
        reset | boot) ;;
        *) exit 1 ;;
        esac
        echo "$(date +%s.%N) set $what=$value" >>"$state.log"
    done
    ;;
*) exit 1 ;;
esac
exit 0
