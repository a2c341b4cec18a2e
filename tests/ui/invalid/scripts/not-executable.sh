#!/bin/sh
echo "this script lacks its executable bit on purpose"
