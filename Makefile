# The two commands of the README, plus benchmarks and lint.
.PHONY: demo test bench lint

demo:            ## install and run the demo on a fresh embedded library
	scripts/venv.sh
	.venv/bin/tapeflow demo

test:            ## install everything the tests need (apt + venv) and run them
	scripts/system-deps.sh
	scripts/venv.sh test,iscsi
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

bench:           ## throughput table: embedded library vs tgt over iSCSI
	scripts/system-deps.sh
	scripts/venv.sh test,iscsi
	.venv/bin/python -m bench

lint:
	.venv/bin/ruff check .
