#!/usr/bin/env bash
# The main job on the embedded default: set up, build the real sample corpora into Hub-layout folders,
# simulate 20 reference-free Interplay dialogues with the embedded SmolLM2 model, and print statistics.
# Re-running resumes the simulation where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${CRSDATA_DATA:-../shared/data}
OUT=${CRSDATA_OUT:-out}
export HF_HUB_OFFLINE=1
bash scripts/setup.sh
crsdata=.venv/bin/crsdata

$crsdata build redial --input "$DATA/redial/redial__valid_data.jsonl" \
    --catalog "$DATA/redial/redial__id2info.json" --out "$OUT/redial"
$crsdata build inspired --input "$DATA/inspired/dev.tsv" --input "$DATA/inspired/test.tsv" \
    --catalog "$DATA/redial/redial__id2info.json" --catalog "$DATA/movielens-sample/movies_w_keywords.csv" \
    --out "$OUT/inspired"
$crsdata build recllmsim --input "$DATA/recllmsim" --out "$OUT/recllmsim"

# 20 dialogues by the shipped default pair (crsdata.backends.embedded.DEFAULT_PAIR: the catalog-grounded user
# and recommender simulators; their adapters are merged into the wheel's SmolLM2 once). Their grounding is
# catalog, so out/redial must hold catalog facts: it is built with --catalog above. No --tags: MovieLens tags join
# only a catalog that knows MovieLens ids, which id2info.json does not (the simulators were trained without them
# in effect). Source records without a usable persona are skipped, counted in the card and replaced by the next
# one. Short turns keep this to a few minutes on 2 CPU cores.
$crsdata simulate interplay --source "$OUT/redial" --n 20 --out "$OUT/interplay-sim" --seed 0 \
    --max-turns 6 --max-new-tokens 64
$crsdata info "$OUT/interplay-sim"
echo "done: dataset folders under $OUT/ (load with datasets.load_dataset(folder, 'dialogues'))"
