# The recipe every function's Makefile shares: a function is plain source (its dependencies come from the
# layers), so sam build (BuildMethod: makefile) copies its modules and needs no python3.13.
#
# sam build runs `make --makefile <CodeUri>/Makefile build-<LogicalId>` in a scratch copy of the function's
# folder, naming the Makefile by its path in the source tree: each Makefile includes this file through that
# path (the last word of MAKEFILE_LIST), not the working directory, which holds the function's folder only.
# So a container build (sam build --use-container), which mounts only that folder, would not find this file;
# and `sam build --cached` (make build) hashes only the folder: after editing this file, `make clean`.
.PHONY: function-source
function-source:
	cp *.py "$(ARTIFACTS_DIR)/"
