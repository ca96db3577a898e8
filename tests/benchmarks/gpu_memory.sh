#!/usr/bin/env bash
# Peak GPU memory of train.py's QLoRA on a Llama-2-7B-shaped base (random weights), at the
# seed's settings (r=16, alpha=32, max_length 1024, batch 4, grad accum 4): does it fit an
# A10G's 24 GB? Run by hand on a CUDA machine; WHEELS_DIR as for gpu_smoke.sh. Writes
# $OUT/memory.csv (nvidia-smi every 0.5 s), $OUT/mem7b.log and prints the peak.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-memory}
WHEELS=${1:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  [ -f "$WHEELS/bnb.tgz" ] && tar -xzf "$WHEELS/bnb.tgz" -C /tmp/site
  export PYTHONPATH=/tmp/site
fi
PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}scripts python3 - <<'PY'
import json, random, shutil, time
from pathlib import Path
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from spacetrain.tinymodel import build_tiny_llama
data = Path("scripts/spacetrain/data/kwanzaa.jsonl")
texts = [m["content"] for l in data.read_text().splitlines() if l.strip()
         for m in json.loads(l)["messages"]]
build_tiny_llama(Path("/tmp/tiny"), texts, seed=0)
t = time.perf_counter()
cfg = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                  num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                  max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0)
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained("/tmp/big7b")
n = sum(p.numel() for p in model.parameters())
del model
torch.cuda.empty_cache()
for f in Path("/tmp/tiny").iterdir():
    if "token" in f.name or f.name.endswith(".jinja"):
        shutil.copy(f, "/tmp/big7b")
random.seed(0)
with open("/tmp/long.jsonl", "w") as out:
    for _ in range(64):
        q = " ".join(random.choices(texts, k=12))
        a = " ".join(random.choices(texts, k=24))
        out.write(json.dumps({"messages": [{"role": "user", "content": q},
                                           {"role": "assistant", "content": a}]}) + "\n")
print(f"[gpu] /tmp/big7b: {n / 1e9:.2f}B params written in {time.perf_counter() - t:.0f} s")
PY
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/memory.csv" &
SMI=$!
SPACETRAIN_EXPECT_GPU=1 timeout 300 python3 space/train.py --base-model /tmp/big7b \
  --dataset /tmp/long.jsonl --output-dir /tmp/run-7b --no-push --run-id gpu-7b --epochs 1 \
  --max-length 1024 --batch-size 4 --grad-accum 4 --packing off --logging-steps 1 \
  > "$OUT/mem7b.log" 2>&1
echo "7b exit $?"
kill $SMI
sort -n "$OUT/memory.csv" | tail -1 | sed 's/^/peak MiB used: /'
grep -v '^@@' "$OUT/mem7b.log" | grep -v "it/s\]" | tail -12
