#!/usr/bin/env bash
# Download a dataset of the VQA family from its official locations into the layout
# data/README.md documents, and on request the bottom-up attention region features of the COCO
# images (converted with `vqa convert`) and pretrained word vectors:
#
#   vqa2    DEST/vqa2/v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json
#           DEST/vqa2/v2_mscoco_{train2014,val2014}_annotations.json            (VQA v2, visualqa.org)
#   vqa1    DEST/vqa1/OpenEnded_mscoco_{train2014,val2014,test-dev2015,test2015}_questions.json,
#           MultipleChoice_mscoco_*_questions.json, mscoco_{train2014,val2014}_annotations.json (VQA v1)
#   vqacp2  DEST/vqacp2/vqacp_v2_{train,test}_{questions,annotations}.json      (VQA-CP v2)
#   okvqa   DEST/okvqa/OpenEnded_mscoco_{train2014,val2014}_questions.json,
#           mscoco_{train2014,val2014}_annotations.json                          (OK-VQA)
#   vizwiz  DEST/vizwiz/{train,val,test}.json, DEST/vizwiz/images/{train,val,test}/VizWiz_*.jpg (VizWiz-VQA)
#
#   COCO images (vqa2, vqa1: train2014, val2014, test2015; vqacp2, okvqa: train2014, val2014), shared:
#           DEST/coco/<subtype>/COCO_<subtype>_<12-digit id>.jpg
#   DEST/vqa2/boxes_{train2014,val2014,test2015}.h5           --features bottomup36 (COCO datasets)
#   DEST/vqa2/boxes_adaptive_{train2014,val2014,test2015}.h5  --features bottomup-adaptive
#   DEST/wordvec/glove.6B.300d.txt | crawl-300d-2M.vec         --word-vectors glove | fasttext
#
# Usage: scripts/download.sh DATASET [--no-images] [--features F] [--word-vectors W] [--keep-zips] [DEST]
#        DATASET: vqa2 | vqa1 | vqacp2 | okvqa | vizwiz; DEST defaults to data.
#        (scripts/download_vqa2.sh is `scripts/download.sh vqa2`.)
#
#   --no-images         only the question and answer files, not the images (COCO: 31 GB of zips; VizWiz:
#                       about 20 GB) that `vqa extract` reads; enough with --features (also: VQA_NO_IMAGES=1)
#   --features F        bottomup36 | bottomup-adaptive | none (default). The bottom-up attention features
#                       of Anderson et al. (2018) of the COCO images: 36 boxes per image (trainval_36.zip 25 GB,
#                       test2015_36.zip 17 GB), or 10-100 (trainval.zip 23 GB, test2015.zip 15 GB). Each trainval
#                       file is split by `vqa convert --questions` into train2014 and val2014, with VQA v2's
#                       question files (fetched too: they name every image of each COCO folder). Every COCO
#                       dataset reads them from DEST/vqa2 (configs/<dataset>/updn_*.yaml); vqacp2 and okvqa
#                       need no test2015 file. VizWiz has no published region features.
#   --word-vectors W    glove | fasttext | none (default): 300-d word vectors for model.word_vectors.
#                       glove: glove.6B.300d.txt from glove.6B.zip (822 MB); fasttext: crawl-300d-2M.vec
#                       from crawl-300d-2M.vec.zip (1.4 GB), the file configs/vqa2/base.yaml names
#   --keep-zips         keep the archives in DEST/downloads, and the unpacked feature TSVs in DEST/bottomup
#                       (default: delete each archive once unpacked, and the TSVs once converted)
#
# Sources; each variable replaces one, e.g. with a mirror or a file:// folder (the tests serve
# tests/fixtures/vqa2_tiny and small synthetic datasets this way):
#   VQA_BASE_URL        https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa (VQA v2 and v1 zips, visualqa.org's links)
#   VQACP_BASE_URL      https://computing.ece.vt.edu/~aish/vqacp (the four VQA-CP v2 JSON files, unzipped)
#   OKVQA_BASE_URL      https://okvqa.allenai.org/static/data (okvqa.allenai.org/download.html)
#   VIZWIZ_BASE_URL     https://vizwiz.cs.colorado.edu/VizWiz_final (vqa_data/Annotations.zip,
#                       images/{train,val,test}.zip; vizwiz.org/tasks-and-datasets/vqa)
#   COCO_BASE_URL       http://images.cocodataset.org/zips
#   FEATURES_BASE_URL   https://storage.googleapis.com/up-down-attention, the last location that
#                       github.com/peteanderson80/bottom-up-attention gives (README, Feb 2021). Its
#                       bucket was reported gone in May 2025 (that repository's issue #132): point
#                       FEATURES_BASE_URL at a mirror that holds the same zips.
#   VECTORS_BASE_URL    https://nlp.stanford.edu/data (glove) or
#                       https://dl.fbaipublicfiles.com/fasttext/vectors-english (fasttext)
#   VQA_CMD             the `vqa` command that converts the features (default: `vqa` on PATH, else this
#                       checkout's .venv/bin/vqa)
#
# Verification: no publisher gives a checksum. glove.6B.zip, crawl-300d-2M.vec.zip, trainval_36.zip
# and VizWiz's images/train.zip are checked against their exact sizes (the PUBLISHED table in this
# script says where each comes from); the other archives are not verified beyond what curl and unzip
# check (the transfer, and each unpacked file's CRC-32; VQA-CP's JSON files: only the transfer).
# VQA_MANIFEST=FILE adds or replaces entries: lines `GROUP/NAME BYTES SHA256` ('-' where unknown),
# GROUP being vqa, coco, vqacp, okvqa, vizwiz, bottomup or wordvec, e.g. for a mirror (`wc -c` and
# `sha256sum` give the values). An archive that fails its check is deleted, and the script stops
# with one line saying why.
#
# Safe to interrupt and run again: an archive downloads into DEST/downloads/[GROUP/]NAME.part and
# resumes from there (curl -C -); it is unpacked into a temporary folder whose files are moved
# into place only when unzip succeeded; `vqa convert` writes each HDF5 file under a temporary name
# and renames it when complete; whatever is already in place is skipped.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "error: $1" >&2; exit "${2:-1}"; }

# The exact sizes known for the publishers' archives: GROUP/NAME BYTES SHA256 ('-': not published).
# glove.6B.zip: the Content-Length of nlp.stanford.edu (wget logs from 2019 and 2022 agree).
# crawl-300d-2M.vec.zip: the Content-Length of dl.fbaipublicfiles.com (a wget log of 2020).
# trainval_36.zip: the Content-Length of the publisher's earlier host, imagecaption.blob.core.windows.net
# (a wget log in github.com/peteanderson80/bottom-up-attention issue #96, January 2021).
# vizwiz/train.zip: the Content-Length and ETag "2a1703b5e-59afdc1e58080" of vizwiz.cs.colorado.edu
# (the ETag's first part is the size in hex; pinned in a public acquisition script of 2026 that
# checks both against the server; last modified 2019-12-31).
# The other feature archives have only rounded sizes on the publisher's page: not verified.
PUBLISHED="
wordvec/glove.6B.zip 862182613 -
wordvec/crawl-300d-2M.vec.zip 1523785255 -
bottomup/trainval_36.zip 26349147849 -
vizwiz/train.zip 11298421598 -
"

DATASETS="vqa2 vqa1 vqacp2 okvqa vizwiz"
DATASET=""
DEST=""
NO_IMAGES=${VQA_NO_IMAGES:-0}
KEEP_ZIPS=0
FEATURES=none
WORD_VECTORS=none
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-images) NO_IMAGES=1 ;;
    --keep-zips) KEEP_ZIPS=1 ;;
    --features=* | --word-vectors=*) set -- "${1%%=*}" "${1#*=}" "${@:2}"; continue ;;
    --features | --word-vectors)
      [[ $# -ge 2 ]] || die "$1 needs a value; see scripts/download.sh --help" 2
      if [[ $1 == --features ]]; then FEATURES=$2; else WORD_VECTORS=$2; fi
      shift ;;
    -h | --help) usage; exit 0 ;;
    -*) die "unknown option '$1'; see scripts/download.sh --help" 2 ;;
    *)
      if [[ -z $DATASET ]]; then
        DATASET=$1
      else
        [[ -z $DEST ]] || die "more than one DEST ('$DEST', '$1')" 2
        DEST=$1
      fi ;;
  esac
  shift
done
case " $DATASETS " in
  *" ${DATASET:-?} "*) ;;
  *)
    [[ -z $DATASET ]] || die "unknown dataset '$DATASET'; choose one of ${DATASETS// /, } (scripts/download.sh --help)" 2
    die "name the dataset: scripts/download.sh {${DATASETS// /|}} [options] [DEST] (scripts/download.sh --help)" 2 ;;
esac
case $FEATURES in bottomup36 | bottomup-adaptive | none) ;;
  *) die "--features is '$FEATURES'; choose bottomup36, bottomup-adaptive or none" 2 ;;
esac
case $WORD_VECTORS in glove | fasttext | none) ;;
  *) die "--word-vectors is '$WORD_VECTORS'; choose glove, fasttext or none" 2 ;;
esac
[[ $DATASET != vizwiz || $FEATURES == none ]] ||
  die "--features: VizWiz has no published region features; extract grid features with \`vqa extract\` (data/README.md, VizWiz-VQA)" 2
DEST=${DEST:-data}
VQACP_BASE_URL=${VQACP_BASE_URL:-https://computing.ece.vt.edu/~aish/vqacp}
OKVQA_BASE_URL=${OKVQA_BASE_URL:-https://okvqa.allenai.org/static/data}
VIZWIZ_BASE_URL=${VIZWIZ_BASE_URL:-https://vizwiz.cs.colorado.edu/VizWiz_final}
VQA_BASE_URL=${VQA_BASE_URL:-https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa}
COCO_BASE_URL=${COCO_BASE_URL:-http://images.cocodataset.org/zips}
FEATURES_BASE_URL=${FEATURES_BASE_URL:-https://storage.googleapis.com/up-down-attention}
if [[ -n ${VQA_MANIFEST:-} && ! -f $VQA_MANIFEST ]]; then
  die "VQA_MANIFEST=$VQA_MANIFEST: file not found; give lines 'GROUP/NAME BYTES SHA256', or unset it" 2
fi

command -v curl >/dev/null || die "curl not found; install it (apt-get install curl)" 2
PYTHON=$(command -v python3 || command -v python || true)
if command -v unzip >/dev/null; then
  unpack_zip() { unzip -q -o "$1" "${@:3}" -d "$2"; }  # unpack_zip ZIP INTO [MEMBER...]
else
  [[ -n $PYTHON ]] || die "neither unzip nor python3 found; install unzip" 2
  unpack_zip() {
    "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], sys.argv[3:] or None)' "$@"
  }
fi
if command -v sha256sum >/dev/null; then
  sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
elif command -v shasum >/dev/null; then
  sha256_of() { shasum -a 256 "$1" | cut -d' ' -f1; }
else
  [[ -n $PYTHON ]] || die "none of sha256sum, shasum or python3 found; install coreutils" 2
  sha256_of() {
    "$PYTHON" -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())' "$1"
  }
fi

# The `vqa` command, found only when features are to be converted, before anything downloads.
VQA=()
find_vqa() {
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [[ -n ${VQA_CMD:-} ]]; then
    read -ra VQA <<<"$VQA_CMD"
  elif command -v vqa >/dev/null; then
    VQA=(vqa)
  elif [[ -x $repo/.venv/bin/vqa ]]; then
    VQA=("$repo/.venv/bin/vqa")
  else
    die "--features needs \`vqa convert\`, and no vqa command was found: run \`make install\` (or pip install -e .) and activate the environment, or set VQA_CMD" 2
  fi
  "${VQA[@]}" convert --help >/dev/null 2>&1 ||
    die "\`${VQA[*]} convert --help\` failed: the vqa command does not run; reinstall it (make install) or set VQA_CMD" 2
  [[ ${VQA[*]} == vqa ]] || echo "vqa: \`vqa convert\` runs as ${VQA[*]}"
}
[[ $FEATURES == none ]] || find_vqa

PROGRESS=(--progress-bar)
[[ -t 2 ]] || PROGRESS=(--silent --show-error)  # a progress bar only on a terminal, not in logs

DL="$DEST/downloads"
SUBFOLDERS=(bottomup wordvec vqacp okvqa vizwiz)  # archives kept in DEST/downloads/GROUP
mkdir -p "$DL" "$DEST/$DATASET"
trap 'for g in "${SUBFOLDERS[@]}"; do rmdir "$DL/$g" 2>/dev/null || true; done' EXIT  # folders an early stop left empty

# expected KEY: "BYTES SHA256 SOURCE" for GROUP/NAME: from VQA_MANIFEST, else PUBLISHED, else "- - -".
expected() {
  # shellcheck disable=SC2016  # an awk program
  local find='$1 == k { print ($2 == "" ? "-" : $2), ($3 == "" ? "-" : $3), src; exit }' line=""
  [[ -z ${VQA_MANIFEST:-} ]] || line=$(awk -v k="$1" -v src=VQA_MANIFEST "$find" "$VQA_MANIFEST")
  [[ -n $line ]] || line=$(awk -v k="$1" -v src="the publisher's size" "$find" <<<"$PUBLISHED")
  echo "${line:-- - -}"
}

# verify FILE KEY URL_VAR: check a finished download against its expected size and SHA256;
# on a mismatch delete it and stop.
verify() {
  local file=$1 key=$2 var=$3 bytes sha from size actual
  read -r bytes sha from <<<"$(expected "$key")"
  if [[ $bytes == - && $sha == - ]]; then
    echo "unverified $key: no published size or checksum (curl checked the transfer; unzip checks each file's CRC)"
    return
  fi
  size=$(wc -c <"$file" | tr -d ' ')
  if [[ $bytes != - && $size != "$bytes" ]]; then
    rm -f "$file"
    die "$key is $size bytes, not $bytes ($from); deleted it: check $var, or list the file in VQA_MANIFEST if your mirror holds another build"
  fi
  if [[ $sha != - ]]; then
    actual=$(sha256_of "$file") || die "could not compute the SHA256 of $file (see above)"
    if [[ $actual != "$sha" ]]; then
      rm -f "$file"
      die "$key has SHA256 $actual, not $sha ($from); deleted it: run the script again, or check $var"
    fi
  fi
  echo "verified $key: $size bytes$([[ $sha == - ]] || echo ", SHA256 $sha") ($from)"
}

# fetch URL FILE KEY URL_VAR: download URL to FILE, resuming FILE.part; FILE appears only when
# complete and verified.
fetch() {
  local url=$1 out=$2 key=$3 var=$4
  if [[ -f $out ]]; then
    echo "have $out"
    return
  fi
  mkdir -p "$(dirname "$out")"
  if [[ -f $out.part ]]; then
    echo "resume $url ($(wc -c <"$out.part" | tr -d ' ') bytes already in $out.part)"
  else
    echo "download $url"
  fi
  if ! curl --fail --location --retry 5 --retry-delay 10 --continue-at - "${PROGRESS[@]}" \
    --output "$out.part" "$url"; then
    if [[ -s $out.part ]]; then
      die "download of $url stopped; run the script again to resume from $out.part"
    else
      rm -f "$out.part"
      die "could not download $url; check the connection or the URL base ($var)"
    fi
  fi
  verify "$out.part" "$key" "$var"
  mv "$out.part" "$out"
}

# unpack ZIP INTO [MEMBER...]: unzip (only MEMBERs, if given) into INTO/.unpack-NAME, then move
# each top-level entry into INTO (a folder or file moved by rename is either wholly there or not).
# With FLATTEN=1, an archive that holds a single folder (and perhaps __MACOSX) gives that
# folder's entries instead: VizWiz's zips are read both ways.
FLATTEN=0
unpack() {
  local zip=$1 into=$2 tmp
  shift 2
  tmp="$into/.unpack-$(basename "$zip" .zip)"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo "unpack $zip -> $into"
  if ! unpack_zip "$zip" "$tmp" "$@" >/dev/null; then
    rm -rf "$tmp"
    if [[ $# -gt 0 ]]; then
      die "$zip is not a valid zip archive or lacks $*; delete it and run the script again"
    fi
    die "$zip is not a valid zip archive; delete it and run the script again"
  fi
  local entry from=$tmp
  if [[ $FLATTEN == 1 ]]; then
    rm -rf "$tmp/__MACOSX"
    local top=()
    for entry in "$tmp"/* "$tmp"/.[!.]*; do [[ -e $entry ]] && top+=("$entry"); done
    if [[ ${#top[@]} == 1 && -d ${top[0]} ]]; then from=${top[0]}; fi
  fi
  for entry in "$from"/* "$from"/.[!.]*; do
    [[ -e $entry ]] || continue
    rm -rf "${into:?}/$(basename "$entry")"
    mv "$entry" "$into/"
  done
  [[ $from == "$tmp" ]] || rmdir "$from"
  rmdir "$tmp"
  [[ $KEEP_ZIPS == 1 ]] || rm -f "$zip"
}

# unpack_folder ZIP FOLDER: unzip into a temporary sibling of FOLDER, then rename the archive's
# single top-level folder (or its top level, when it holds several entries) to FOLDER at once.
unpack_folder() {
  local zip=$1 folder=$2 tmp root entry top=()
  tmp="$(dirname "$folder")/.unpack-$(basename "$folder")"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  echo "unpack $zip -> $folder"
  if ! unpack_zip "$zip" "$tmp" >/dev/null; then
    rm -rf "$tmp"
    die "$zip is not a valid zip archive; delete it and run the script again"
  fi
  rm -rf "$tmp/__MACOSX"
  for entry in "$tmp"/* "$tmp"/.[!.]*; do [[ -e $entry ]] && top+=("$entry"); done
  root=$tmp
  if [[ ${#top[@]} == 1 && -d ${top[0]} ]]; then root=${top[0]}; fi
  rm -rf "$folder"
  mv "$root" "$folder"
  rm -rf "$tmp"
  [[ $KEEP_ZIPS == 1 ]] || rm -f "$zip"
}

# get BASE_URL KEY INTO [--only] TARGET...: skip when every TARGET (relative to INTO) is in place,
# else download GROUP/NAME = KEY and unpack it into INTO (with --only: just the TARGETs, which are
# then archive members), then check that the targets appeared. VQA and COCO archives download
# to DEST/downloads/NAME, the others to DEST/downloads/GROUP/NAME.
get() {
  local base=$1 key=$2 into=$3 name=${2#*/} only=0 var file
  shift 3
  if [[ $1 == --only ]]; then only=1; shift; fi
  case $key in
    vqa/*) var=VQA_BASE_URL file=$DL/$name ;;
    coco/*) var=COCO_BASE_URL file=$DL/$name ;;
    bottomup/*) var=FEATURES_BASE_URL file=$DL/$key ;;
    okvqa/*) var=OKVQA_BASE_URL file=$DL/$key ;;
    vizwiz/*) var=VIZWIZ_BASE_URL file=$DL/$key ;;
    *) var=VECTORS_BASE_URL file=$DL/$key ;;
  esac
  local target missing=0
  for target in "$@"; do [[ -e $into/$target ]] || missing=1; done
  if [[ $missing == 0 ]]; then
    echo "skip $name: $(printf '%s ' "$@")already in $into"
    return
  fi
  fetch "${base%/}/$name" "$file" "$key" "$var"
  mkdir -p "$into"
  if [[ $only == 1 ]]; then unpack "$file" "$into" "$@"; else unpack "$file" "$into"; fi
  for target in "$@"; do
    [[ -e $into/$target ]] || die "$name did not contain $target; check the URL base ${base%/} ($var)"
  done
}

# get_file BASE_URL GROUP/NAME INTO: a file served as it is (VQA-CP's JSON): skip when INTO/NAME is in
# place, else download it (resumable, checked where a size is known) and move it in.
get_file() {
  local base=$1 key=$2 into=$3 name=${2#*/}
  if [[ -e $into/$name ]]; then
    echo "skip $name: already in $into"
    return
  fi
  fetch "${base%/}/$name" "$DL/$key" "$key" VQACP_BASE_URL
  mkdir -p "$into"
  mv "$DL/$key" "$into/$name"
}

# get_folder BASE_URL GROUP/NAME FOLDER: skip when FOLDER is in place, else download the archive
# and unpack it as FOLDER (VizWiz's image zips).
get_folder() {
  local base=$1 key=$2 folder=$3 name=${2#*/}
  if [[ -d $folder ]]; then
    echo "skip $name: $folder already in place"
    return
  fi
  fetch "${base%/}/$name" "$DL/$key" "$key" VIZWIZ_BASE_URL
  unpack_folder "$DL/$key" "$folder"
}

# features ZIP OUT:SPLIT... -- MEMBER...: the bottom-up TSVs MEMBER of ZIP (from FEATURES_BASE_URL)
# -> DEST/vqa2/OUT by `vqa convert`, keeping the images of SPLIT's questions (all when SPLIT is
# empty). Skipped when every OUT exists; the TSVs are deleted once every OUT is written.
features() {
  local zip=$1 outs=() tsvs=() spec out split args
  shift
  while [[ $1 != -- ]]; do outs+=("$1"); shift; done
  shift
  local missing=()
  for spec in "${outs[@]}"; do [[ -e $DEST/vqa2/${spec%%:*} ]] || missing+=("$spec"); done
  if [[ ${#missing[@]} == 0 ]]; then
    echo "skip $zip: $(for spec in "${outs[@]}"; do printf '%s ' "${spec%%:*}"; done)already in $DEST/vqa2"
    return
  fi
  get "$FEATURES_BASE_URL" "bottomup/$zip" "$DEST/bottomup" --only "$@"
  for spec in "$@"; do tsvs+=("$DEST/bottomup/$spec"); done
  for spec in "${missing[@]}"; do
    out=$DEST/vqa2/${spec%%:*} split=${spec#*:}
    args=(convert --from bottomup-tsv "${tsvs[@]}")
    [[ -z $split ]] || args+=(--questions "$DEST/vqa2/v2_OpenEnded_mscoco_${split}_questions.json")
    args+=(--out "$out")
    echo "vqa ${args[*]}"
    "${VQA[@]}" "${args[@]}" ||
      die "\`vqa ${args[*]}\` failed (its message is above) and wrote nothing; the TSVs stay in $DEST/bottomup: fix the cause and run the script again"
  done
  if [[ $KEEP_ZIPS == 0 ]]; then
    for spec in "$@"; do rm -rf "${DEST:?}/bottomup/${spec%%/*}"; done
    rmdir "$DEST/bottomup" 2>/dev/null || true
  fi
}

V=v2_OpenEnded_mscoco
# The VQA v2 question files, which name the images of each COCO folder (--features splits by them).
vqa2_questions() {
  get "$VQA_BASE_URL" vqa/v2_Questions_Train_mscoco.zip "$DEST/vqa2" ${V}_train2014_questions.json
  get "$VQA_BASE_URL" vqa/v2_Questions_Val_mscoco.zip "$DEST/vqa2" ${V}_val2014_questions.json
}

# coco_images SUBTYPE...: the COCO image folders a dataset asks about, shared in DEST/coco.
coco_images() {
  if [[ $NO_IMAGES == 1 ]]; then
    echo "images skipped (--no-images)"
    return
  fi
  mkdir -p "$DEST/coco"
  for subtype in "$@"; do
    get "$COCO_BASE_URL" "coco/$subtype.zip" "$DEST/coco" "$subtype"
  done
}

TEST_BOXES=1  # whether the dataset asks about test2015 images
IMAGES=$DEST/coco
case $DATASET in
  vqa2)
    vqa2_questions
    get "$VQA_BASE_URL" vqa/v2_Questions_Test_mscoco.zip "$DEST/vqa2" ${V}_test2015_questions.json ${V}_test-dev2015_questions.json
    get "$VQA_BASE_URL" vqa/v2_Annotations_Train_mscoco.zip "$DEST/vqa2" v2_mscoco_train2014_annotations.json
    get "$VQA_BASE_URL" vqa/v2_Annotations_Val_mscoco.zip "$DEST/vqa2" v2_mscoco_val2014_annotations.json
    coco_images train2014 val2014 test2015 ;;
  vqa1)  # the questions zips also hold the MultipleChoice_* files (18 candidates per question)
    O=OpenEnded_mscoco
    get "$VQA_BASE_URL" vqa/Questions_Train_mscoco.zip "$DEST/vqa1" ${O}_train2014_questions.json
    get "$VQA_BASE_URL" vqa/Questions_Val_mscoco.zip "$DEST/vqa1" ${O}_val2014_questions.json
    get "$VQA_BASE_URL" vqa/Questions_Test_mscoco.zip "$DEST/vqa1" ${O}_test2015_questions.json ${O}_test-dev2015_questions.json
    get "$VQA_BASE_URL" vqa/Annotations_Train_mscoco.zip "$DEST/vqa1" mscoco_train2014_annotations.json
    get "$VQA_BASE_URL" vqa/Annotations_Val_mscoco.zip "$DEST/vqa1" mscoco_val2014_annotations.json
    coco_images train2014 val2014 test2015 ;;
  vqacp2)  # plain JSON files, not archives
    for name in vqacp_v2_{train,test}_{questions,annotations}.json; do
      get_file "$VQACP_BASE_URL" "vqacp/$name" "$DEST/vqacp2"
    done
    TEST_BOXES=0
    coco_images train2014 val2014 ;;
  okvqa)  # one zip per JSON file, named after it
    for name in OpenEnded_mscoco_{train2014,val2014}_questions.json mscoco_{train2014,val2014}_annotations.json; do
      get "$OKVQA_BASE_URL" "okvqa/$name.zip" "$DEST/okvqa" "$name"
    done
    TEST_BOXES=0
    coco_images train2014 val2014 ;;
  vizwiz)
    FLATTEN=1  # Annotations.zip holds {train,val,test}.json, in a folder or not
    get "${VIZWIZ_BASE_URL%/}/vqa_data" vizwiz/Annotations.zip "$DEST/vizwiz" train.json val.json test.json
    FLATTEN=0
    IMAGES=$DEST/vizwiz/images
    if [[ $NO_IMAGES == 1 ]]; then
      echo "images skipped (--no-images)"
    else
      for split in train val test; do
        get_folder "${VIZWIZ_BASE_URL%/}/images" "vizwiz/$split.zip" "$IMAGES/$split"
      done
    fi ;;
esac

BOXES=""
[[ $FEATURES == none || $DATASET == vqa2 ]] || vqa2_questions
case $FEATURES in
  bottomup36)
    features trainval_36.zip boxes_train2014.h5:train2014 boxes_val2014.h5:val2014 -- \
      trainval_36/trainval_resnet101_faster_rcnn_genome_36.tsv
    [[ $TEST_BOXES == 0 ]] ||
      features test2015_36.zip boxes_test2015.h5: -- test2015_36/test2015_resnet101_faster_rcnn_genome_36.tsv
    BOXES=boxes ;;
  bottomup-adaptive)
    K=trainval/karpathy
    features trainval.zip boxes_adaptive_train2014.h5:train2014 boxes_adaptive_val2014.h5:val2014 -- \
      ${K}_train_resnet101_faster_rcnn_genome.tsv.0 ${K}_train_resnet101_faster_rcnn_genome.tsv.1 \
      ${K}_val_resnet101_faster_rcnn_genome.tsv ${K}_test_resnet101_faster_rcnn_genome.tsv
    [[ $TEST_BOXES == 0 ]] ||
      features test2015.zip boxes_adaptive_test2015.h5: -- test2015/test2015_resnet101_faster_rcnn_genome.tsv
    BOXES=boxes_adaptive ;;
esac

VECTORS=""
case $WORD_VECTORS in
  glove)
    VECTORS=glove.6B.300d.txt
    get "${VECTORS_BASE_URL:-https://nlp.stanford.edu/data}" wordvec/glove.6B.zip "$DEST/wordvec" --only "$VECTORS" ;;
  fasttext)
    VECTORS=crawl-300d-2M.vec
    get "${VECTORS_BASE_URL:-https://dl.fbaipublicfiles.com/fasttext/vectors-english}" wordvec/crawl-300d-2M.vec.zip \
      "$DEST/wordvec" --only "$VECTORS" ;;
esac

for g in "${SUBFOLDERS[@]}"; do rmdir "$DL/$g" 2>/dev/null || true; done
rmdir "$DL" 2>/dev/null || true
echo "done: $DEST/$DATASET$([[ $NO_IMAGES == 1 ]] || echo " and $IMAGES")"
ROOT=""
[[ $DEST == data ]] || ROOT=" data.root=$DEST/$DATASET"
FEATURES_FILE=""  # where configs/<dataset>/updn_*.yaml look, as a data.features_file value
[[ $DATASET == vqa2 ]] || FEATURES_FILE=../vqa2/
if [[ $BOXES == boxes ]]; then
  echo "boxes: $DEST/vqa2/boxes_{train2014,val2014,test2015}.h5, for \`vqa train --config configs/$DATASET/updn_soft.yaml$ROOT\`"
elif [[ -n $BOXES ]]; then
  echo "boxes: $DEST/vqa2/boxes_adaptive_{train2014,val2014,test2015}.h5, for \`vqa train --config configs/$DATASET/updn_soft.yaml$ROOT data.features_file='${FEATURES_FILE}boxes_adaptive_{split}.h5'\`"
fi
if [[ -n $VECTORS ]]; then
  echo "word vectors: $DEST/wordvec/$VECTORS, for \`vqa train --config configs/$DATASET/<model>.yaml$ROOT model.word_vectors=$DEST/wordvec/$VECTORS\`$(
    [[ $DEST/wordvec/$VECTORS != data/wordvec/crawl-300d-2M.vec ]] || echo " (or uncomment model.word_vectors in configs/vqa2/base.yaml)")"
fi
if [[ $DATASET == vizwiz && $NO_IMAGES == 0 ]]; then
  echo "features: \`vqa extract --images $IMAGES/<split> --out $DEST/vizwiz/features_<split>.h5\` for split train, val, test"
fi
