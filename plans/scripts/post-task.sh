#!/bin/sh
# post-task hook for the nightly plan: receives DPPLAN_* variables (docs/language.md).
echo "post-task: plan=$DPPLAN_PLAN run=$DPPLAN_RUN_ID task=${DPPLAN_TASK_ID:-} status=${DPPLAN_STATUS:-}"
