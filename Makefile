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

bench:           ## every benchmark, each with its reference measured in the same run
	scripts/system-deps.sh
	scripts/venv.sh test,iscsi,server
	.venv/bin/python -m bench
	.venv/bin/python -m bench.writer_bench
	.venv/bin/python -m bench.catalog_bench
	url=$$(scripts/prefect-server.sh start) && trap 'scripts/prefect-server.sh stop' EXIT && \
	  PREFECT_API_URL=$$url .venv/bin/python -m bench.master_bench
	.venv/bin/python -m bench.fs_bench
	.venv/bin/python -m bench.serverless_bench

lint:
	.venv/bin/ruff check .
