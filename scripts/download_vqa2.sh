#!/usr/bin/env bash
# VQA v2 and the COCO images: `scripts/download.sh vqa2 [options] [DEST]`, under its former name
# (scripts/download.sh --help lists the options and the other datasets).
exec "$(dirname "${BASH_SOURCE[0]}")/download.sh" vqa2 "$@"
