# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean bench themes

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, pinned, so nothing below can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# The tensorboard, hf, serve and icons extras too, so their tests run (optional for users); playwright
	# (in test) drives the system's Chromium in the browser test of fewgen serve (.ci/run installs it).
	$(BIN)/pip install -q -e '.[test,tensorboard,hf,serve,icons]'
	touch $(STAMP)

# The icon themes the `icons` data source reads by default (fewgen.tasks.icons.THEME_PACKAGES: a
# test checks that the two lists agree), Debian packages: installed when missing where apt-get runs
# as root (CI), else named (the tests that read them then skip, saying so).
ICON_THEMES := adwaita-icon-theme breeze-icon-theme elementary-xfce-icon-theme faba-icon-theme \
	gnome-icon-theme lxde-icon-theme mate-icon-theme moka-icon-theme numix-icon-theme \
	oxygen-icon-theme suru-icon-theme tango-icon-theme

themes:
	@dpkg -s $(ICON_THEMES) >/dev/null 2>&1 || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(ICON_THEMES); \
	else echo "the icons data source reads Debian's icon themes: sudo apt-get install $(ICON_THEMES)"; fi

install: $(STAMP) themes

demo: $(STAMP)
	$(BIN)/fewgen demo --out runs/demo --overwrite

test: $(STAMP) themes
	$(BIN)/python -m pytest tests

clean:
	rm -rf $(VENV) runs
