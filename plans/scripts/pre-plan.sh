#!/bin/sh
# pre-plan hook for the nightly plan: receives DPPLAN_* variables (docs/language.md).
echo "pre-plan: plan=$DPPLAN_PLAN run=$DPPLAN_RUN_ID task=${DPPLAN_TASK_ID:-} status=${DPPLAN_STATUS:-}"
