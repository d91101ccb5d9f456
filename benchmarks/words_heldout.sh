#!/bin/bash
# The held-out text table: a text checkpoint on the `words` test languages (six Latin-script
# languages of six families, Ukrainian, and Persian and Hebrew reported apart), beside the
# classical baselines on the same supports and queries. Run from the repository root:
#   bash benchmarks/words_heldout.sh runs/words          (writes runs/words/heldout.json)
#   OUT=runs/zoo_cards/words-transformer bash benchmarks/words_heldout.sh words-transformer   (a zoo model)
# 1. fewgen eval: bits/char at K = 0, 1, 5, 10 on 200 queries per language, by script, with the
#    byte-trigram + support-trigram baseline (text_ngram order 3, fit on the same meta-train
#    split, its mixture weight chosen on meta-val) in the same report; 50 samples per language
#    given 10 words at the checkpoint's guidance: fidelity by script (character 4-gram language
#    identifiers; real held-out words give the ceiling) and support sensitivity.
# 2. The same 50 samples' figures at guidance 1 (the model's own distribution).
# 3. The reference character trigram of ../shared/MEASUREMENTS.md (Witten-Bell, support weight 0.3).
# 4. Where the support's information goes: bits/char per K and the gate's weight on the cache,
#    held-out vs training languages.
set -e
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONPATH=src
RUN=${1:?usage: words_heldout.sh RUN}
OUT=${OUT:-$RUN}  # where the JSON reports go (a zoo model's folder is the package's: give OUT)
PY=${PYTHON:-python}  # e.g. PYTHON=.venv/bin/python
mkdir -p "$OUT"
FG="$PY -m fewgen"
$FG eval $RUN --split test --shots 0,1,5,10 --max-queries 200 --metrics nll,fidelity --samples 50 --quiet \
    --json $OUT/heldout.json
$FG eval $RUN --split test --shots 10 --max-queries 1 --metrics nll,fidelity --samples 50 --quiet --no-baseline \
    --guidance 1 --json $OUT/heldout_g1.json | grep -A20 "^samples"
$PY benchmarks/char_trigram.py --shots 0,1,5,10 --queries 200 | grep -v "^w=0.3 *[a-z][a-z] "
$PY benchmarks/text_support_use.py $RUN --queries 200 --json $OUT/support_use.json
