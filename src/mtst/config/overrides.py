"""Command-line overrides checked before Hydra runs: a mistyped group option or setting name
ends with one `error:` line that lists the choices, and exit code 2.

Hydra reports these itself, but on several lines with exit code 1 (and, for a typo in a key,
without saying which keys exist). The check composes the config once with the same overrides,
so it accepts exactly what Hydra accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtst.errors import MtstError, first_line

# flags after which Hydra does something other than run the task: leave those to Hydra
HYDRA_ONLY_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
                    "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
                    "--version", "--experimental-rerun"}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p"}


def overrides_of(argv: list[str]) -> list[str] | None:
    """The override arguments of a Hydra command line, or None when a flag hands it to Hydra."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg.split("=", 1)[0] in HYDRA_ONLY_FLAGS:
            return None
        elif arg in FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def group_options(conf_dir: Path, group: str) -> list[str] | None:
    """The options of config group `group` (a folder of conf/), or None when it is not one."""
    folder = conf_dir / group
    if not folder.is_dir():
        return None
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def check_command_line(argv: list[str], conf_dir: Path, config_name: str) -> None:
    """Raise MtstError for an unknown group option, an unknown key or an unparsable override."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    args = overrides_of(argv)
    if not args:
        return
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException as err:
        raise MtstError(first_line(err)) from None
    # another search path may add options: then composing (below) is the check
    searchpath = any(o.key_or_group == "hydra.searchpath" for o in parsed)
    representative = []
    for override in parsed:
        values = _values(override)
        if not searchpath:
            _check_group(conf_dir, override.key_or_group, values)
        if not override.is_sweep_override():
            representative.append(override.input_line)
        elif values:  # a sweep composes like its first value; intervals and globs are left out
            representative.append(f"{override.get_key_element()}={values[0]}")
    _compose_or_explain(conf_dir, config_name, representative)


def _values(override: Any) -> list[str]:
    if override.is_delete():
        return []
    if override.is_sweep_override():
        if override.value_type.name in ("CHOICE_SWEEP", "SIMPLE_CHOICE_SWEEP"):
            return [str(v) for v in override.sweep_string_iterator()]
        return []
    value = override.value()
    if isinstance(value, list):  # several options of one group: logger=[tensorboard,mlflow]
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def _check_group(conf_dir: Path, group: str, values: list[str]) -> None:
    if group.startswith("hydra"):  # Hydra's own groups also come from its plugins
        return
    options = group_options(conf_dir, group)
    if options is None:
        return
    for value in values:
        if value not in options:
            raise MtstError(f"{group}={value}: no such option; choose one of {', '.join(options)}")


def _compose_or_explain(conf_dir: Path, config_name: str, overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            try:
                compose(config_name, overrides=overrides)
            except (HydraException, OmegaConfBaseException) as err:
                raise MtstError(_explain(err, config_name, overrides)) from None
    finally:
        GlobalHydra.instance().clear()


def _explain(err: Exception, config_name: str, overrides: list[str]) -> str:
    """One line for a composition error; for a key that does not exist, the keys that do."""
    from hydra import compose
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, value = str(err.missing_cfg_file).rpartition("/")
        return f"{group}={value}: no such option; choose one of {', '.join(err.options)}"
    cause = err.__cause__
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        parent, _, name = key.rpartition(".")
        offending = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key]
        others = [o for o in overrides if o not in offending]
        try:
            root = compose(config_name, overrides=others)
            node = OmegaConf.select(root, parent) if parent else root
        except Exception:  # another override is wrong too: name this one alone
            node = None
        names = [str(k) for k in node if not str(k).startswith("_")] if node is not None else []
        known = f"; {parent or 'the config'} has {', '.join(names)}" if names else ""
        return f"{key}: no such setting{known} (to add a new key, write +{key}=...)"
    return first_line(err)

