#!/usr/bin/env bash
# The GPU path of space/train.py on a CUDA machine (run by hand; CI has no GPU).
#
#   bash tests/benchmarks/gpu_smoke.sh [WHEELS_DIR]
#
# Expects python3 with a CUDA torch. WHEELS_DIR (optional) holds the pinned stack as
# wheels (transformers, peft, trl, datasets, huggingface_hub, ...) and bnb.tgz, a
# bitsandbytes package folder: they are put first on PYTHONPATH. Offline throughout.
# Writes to $OUT (default /tmp/gpu-smoke): facts.json (gpu_facts + the self-check's
# verdict), tiny.log (the tiny model learns on CUDA), bench-*.log (a TinyLlama-1.1B
# shaped random model, 4-bit NF4 + LoRA r=16, tokens/s), summary.txt.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-smoke}
WHEELS=${1:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME=/tmp/hf-home
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  [ -f "$WHEELS/bnb.tgz" ] && tar -xzf "$WHEELS/bnb.tgz" -C /tmp/site
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/summary.txt"
python3 - <<'PY' | tee -a "$OUT/summary.txt"
import importlib.metadata as m, sys
print("python", sys.version.split()[0])
for n in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets",
          "huggingface_hub", "tokenizers", "safetensors"):
    try:
        print(n, m.version(n))
    except m.PackageNotFoundError:
        print(n, "MISSING")
PY
# 1. The self-check's GPU branch, and the facts the app's diagnostics print.
SPACETRAIN_EXPECT_GPU=1 python3 - "$OUT/facts.json" <<'PY'
import json, sys, time
sys.path.insert(0, "space")
import train
t = time.perf_counter()
check = train.check_gpu()
check["seconds"] = round(time.perf_counter() - t, 2)
print("[gpu] check", json.dumps(check))
open(sys.argv[1], "w").write(json.dumps(check, indent=1))
PY
# 2. The tiny model (what the rehearsal trains) learns on CUDA through train.py.
PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}scripts python3 - <<'PY'
import json
from pathlib import Path
from spacetrain.tinymodel import build_tiny_llama
data = Path("scripts/spacetrain/data/kwanzaa.jsonl")
texts = [m["content"] for l in data.read_text().splitlines() if l.strip()
         for m in json.loads(l)["messages"]]
build_tiny_llama(Path("/tmp/tiny"), texts, seed=0)
# A TinyLlama-1.1B-shaped base with random weights and the tiny tokenizer: throughput only.
import shutil, torch
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                  num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                  max_position_embeddings=2048, bos_token_id=1, eos_token_id=2, pad_token_id=0)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg).to(torch.bfloat16)
model.save_pretrained("/tmp/big")
for f in Path("/tmp/tiny").iterdir():
    if "token" in f.name or f.name.endswith(".jinja"):
        shutil.copy(f, "/tmp/big")
import random
random.seed(0)
with open("/tmp/long.jsonl", "w") as out:
    for i in range(1200):
        q = " ".join(random.choices(texts, k=12))
        a = " ".join(random.choices(texts, k=24))
        out.write(json.dumps({"messages": [{"role": "user", "content": q},
                                           {"role": "assistant", "content": a}]}) + "\n")
print("[gpu] built /tmp/tiny, /tmp/big (%.2fB params), /tmp/long.jsonl"
      % (sum(p.numel() for p in model.parameters()) / 1e9))
PY
SPACETRAIN_EXPECT_GPU=1 timeout 240 python3 space/train.py --base-model /tmp/tiny \
  --dataset scripts/spacetrain/data/kwanzaa.jsonl --output-dir /tmp/run-tiny --no-push \
  --run-id gpu-tiny --epochs 4 > "$OUT/tiny.log" 2>&1
echo "tiny exit $?" | tee -a "$OUT/summary.txt"
cp /tmp/run-tiny/run.json "$OUT/tiny-run.json" 2>/dev/null
for packing in off on; do
  SPACETRAIN_EXPECT_GPU=1 timeout 150 python3 space/train.py --base-model /tmp/big \
    --dataset /tmp/long.jsonl --output-dir "/tmp/run-$packing" --no-push \
    --run-id "gpu-bench-$packing" --epochs 1 --max-length 1024 --batch-size 8 --grad-accum 2 \
    --packing "$packing" --logging-steps 5 > "$OUT/bench-$packing.log" 2>&1
  echo "bench packing=$packing exit $?" | tee -a "$OUT/summary.txt"
done
nvidia-smi --query-gpu=memory.used --format=csv | tee -a "$OUT/summary.txt"
grep -h '"event": "step"' "$OUT"/bench-*.log | tail -4 | cut -c1-400 | tee -a "$OUT/summary.txt"
grep -h '"event": "done"\|"event": "error"' "$OUT"/*.log | cut -c1-600 | tee -a "$OUT/summary.txt"
