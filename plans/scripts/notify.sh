#!/bin/sh
# Sends a notice to the operations channel (here: stderr) with the run id.
echo "dpplan: $1 (run ${DPPLAN_RUN_ID:-?}, plan ${DPPLAN_PLAN:-?})" >&2
