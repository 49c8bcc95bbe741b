#!/usr/bin/env bash
# Download VQA v2 (questions and annotations of train, val, test-dev, test) and the COCO
# 2014/2015 images from their official locations, into the layout data/README.md documents:
#
#   DEST/vqa2/v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json
#   DEST/vqa2/v2_mscoco_{train2014,val2014}_annotations.json
#   DEST/coco/{train2014,val2014,test2015}/COCO_<subtype>_<12-digit id>.jpg
#
# Usage: scripts/download_vqa2.sh [--no-images] [--keep-zips] [DEST]     (DEST defaults to data)
#
#   --no-images   only the VQA JSON files (about 50 MB of zips): for users who convert precomputed features
#                 instead of extracting them from the images (also: VQA_NO_IMAGES=1)
#   --keep-zips   keep the archives in DEST/downloads after unpacking (default: delete them,
#                 about 31 GB for the images)
#
# Environment: VQA_BASE_URL (default https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa) and
# COCO_BASE_URL (default http://images.cocodataset.org/zips) replace the servers, e.g. with a
# mirror or a file:// folder (the tests serve tests/fixtures/vqa2_tiny this way).
#
# Safe to interrupt and run again: an archive downloads into DEST/downloads/NAME.part and
# resumes from there (curl -C -); it is unpacked into a temporary folder whose files are
# moved into place only when unzip succeeded; whatever is already in place is skipped.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

DEST=""
NO_IMAGES=${VQA_NO_IMAGES:-0}
KEEP_ZIPS=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-images) NO_IMAGES=1 ;;
    --keep-zips) KEEP_ZIPS=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "error: unknown option '$1'; see scripts/download_vqa2.sh --help" >&2; exit 2 ;;
    *)
      if [[ -n $DEST ]]; then echo "error: more than one DEST ('$DEST', '$1')" >&2; exit 2; fi
      DEST=$1 ;;
  esac
  shift
done
DEST=${DEST:-data}
VQA_BASE_URL=${VQA_BASE_URL:-https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa}
COCO_BASE_URL=${COCO_BASE_URL:-http://images.cocodataset.org/zips}

command -v curl >/dev/null || { echo "error: curl not found; install it (apt-get install curl)" >&2; exit 2; }
if command -v unzip >/dev/null; then
  unpack_zip() { unzip -q -o "$1" -d "$2"; }
else
  PYTHON=$(command -v python3 || command -v python) || { echo "error: neither unzip nor python3 found; install unzip" >&2; exit 2; }
  unpack_zip() { "$PYTHON" -m zipfile -e "$1" "$2"; }
fi

DL="$DEST/downloads"
mkdir -p "$DL" "$DEST/vqa2"

# fetch URL FILE: download URL to FILE, resuming FILE.part; FILE appears only when complete.
fetch() {
  local url=$1 out=$2
  if [[ -f $out ]]; then
    echo "have $out"
    return
  fi
  if [[ -f $out.part ]]; then
    echo "resume $url ($(wc -c <"$out.part" | tr -d ' ') bytes already in $out.part)"
  else
    echo "download $url"
  fi
  if ! curl --fail --location --retry 5 --retry-delay 10 --continue-at - --progress-bar \
    --output "$out.part" "$url"; then
    if [[ -s $out.part ]]; then
      echo "error: download of $url stopped; run the script again to resume from $out.part" >&2
    else
      rm -f "$out.part"
      echo "error: could not download $url; check the connection or the URL base (VQA_BASE_URL, COCO_BASE_URL)" >&2
    fi
    exit 1
  fi
  mv "$out.part" "$out"
}

# unpack ZIP INTO: unzip into INTO/.unpack-NAME, then move each top-level entry into INTO
# (a folder or file moved by rename is either wholly there or not at all).
unpack() {
  local zip=$1 into=$2 tmp
  tmp="$into/.unpack-$(basename "$zip" .zip)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo "unpack $zip -> $into"
  if ! unpack_zip "$zip" "$tmp"; then
    rm -rf "$tmp"
    echo "error: $zip is not a valid zip archive; delete it and run the script again" >&2
    exit 1
  fi
  local entry
  for entry in "$tmp"/* "$tmp"/.[!.]*; do
    [[ -e $entry ]] || continue
    rm -rf "${into:?}/$(basename "$entry")"
    mv "$entry" "$into/"
  done
  rmdir "$tmp"
  [[ $KEEP_ZIPS == 1 ]] || rm -f "$zip"
}

# get BASE_URL NAME INTO TARGET...: skip when every TARGET (relative to INTO) is in place,
# else download NAME and unpack it into INTO, then check that the targets appeared.
get() {
  local base=$1 name=$2 into=$3
  shift 3
  local target missing=0
  for target in "$@"; do [[ -e $into/$target ]] || missing=1; done
  if [[ $missing == 0 ]]; then
    echo "skip $name: $(printf '%s ' "$@")already in $into"
    return
  fi
  fetch "${base%/}/$name" "$DL/$name"
  unpack "$DL/$name" "$into"
  for target in "$@"; do
    if [[ ! -e $into/$target ]]; then
      echo "error: $name did not contain $target; check the URL base ${base%/}" >&2
      exit 1
    fi
  done
}

V=v2_OpenEnded_mscoco
get "$VQA_BASE_URL" v2_Questions_Train_mscoco.zip "$DEST/vqa2" ${V}_train2014_questions.json
get "$VQA_BASE_URL" v2_Questions_Val_mscoco.zip "$DEST/vqa2" ${V}_val2014_questions.json
get "$VQA_BASE_URL" v2_Questions_Test_mscoco.zip "$DEST/vqa2" ${V}_test2015_questions.json ${V}_test-dev2015_questions.json
get "$VQA_BASE_URL" v2_Annotations_Train_mscoco.zip "$DEST/vqa2" v2_mscoco_train2014_annotations.json
get "$VQA_BASE_URL" v2_Annotations_Val_mscoco.zip "$DEST/vqa2" v2_mscoco_val2014_annotations.json

if [[ $NO_IMAGES == 1 ]]; then
  echo "images skipped (--no-images)"
else
  mkdir -p "$DEST/coco"
  for subtype in train2014 val2014 test2015; do
    get "$COCO_BASE_URL" "$subtype.zip" "$DEST/coco" "$subtype"
  done
fi
rmdir "$DL" 2>/dev/null || true
echo "done: $DEST/vqa2$([[ $NO_IMAGES == 1 ]] || echo " and $DEST/coco")"
