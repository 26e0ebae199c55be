# Thin wrapper: everything lives in dev.sh so that a machine without make can run it too.
.PHONY: run test build bench
run test build bench:
	./dev.sh $@
