# The two set-up commands of the README. Each creates or updates .venv by itself.
VENV ?= .venv
PY := $(VENV)/bin/python
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv demo test clean

venv:
	@VENV=$(VENV) bash scripts/setup_env.sh

demo: venv
	$(PY) -m stereo_depth_ros.tools.demo $(ARGS)

test: venv
	$(PY) -m pytest $(ARGS)

clean:
	rm -rf $(VENV) build install log *.egg-info demo_output
