.PHONY: demo test bench lint format

demo:
	scripts/demo.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
