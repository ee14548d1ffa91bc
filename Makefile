# One command per habit. Every target creates .venv and installs what it needs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
OUT     ?= runs/demo

.PHONY: venv demo test lint format bench proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first: with it installed, "torch==2.13.0" below is already satisfied
	# and no CUDA packages are pulled in.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,mlflow]"
	touch $(STAMP)

venv: $(STAMP)

REAL_FRAUD := ../shared/data/creditcard/creditcard_1722.csv

# The real thing: one node process per domain on 127.0.0.1 with mutual TLS (splitmesh mesh
# up), on the real subset when it is there, else a synthetic set of the same schema.
demo: $(STAMP)
	@if [ -f $(REAL_FRAUD) ]; then \
		$(BIN)/splitmesh mesh up fraud --workdir $(OUT)/mesh --mode all --data $(REAL_FRAUD) --out $(OUT); \
	else \
		echo "$(REAL_FRAUD) not found: running on 100,000 synthetic rows instead"; \
		$(BIN)/splitmesh mesh up fraud --workdir $(OUT)/mesh --mode all --synthetic-rows 100000 \
			--epochs 15 --patience 5 --out $(OUT); \
	fi

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/fraud.py --out benchmarks/results
	$(BIN)/python benchmarks/transport.py --out benchmarks/results
	$(BIN)/python benchmarks/recsys.py --out benchmarks/results
	$(BIN)/python benchmarks/psi.py --out benchmarks/results
	$(BIN)/python benchmarks/star.py --out benchmarks/results
	$(BIN)/python benchmarks/privacy.py --out benchmarks/results
	$(BIN)/python benchmarks/startup.py --out benchmarks/results
	$(BIN)/python benchmarks/scale.py --hm-batch-size 1024 --out benchmarks/results

# Regenerate the protobuf and gRPC code after editing transport/grpc/splitmesh.proto.
proto: $(STAMP)
	cd src && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. \
		--pyi_out=. splitmesh/transport/grpc/splitmesh.proto

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
