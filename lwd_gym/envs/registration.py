"""Making the Gymnasium envs lwd-gym knows, and saying what to install when one cannot be made.

* :func:`register_envs` registers lwd-gym's own ids (``lwd_gym/Bimodal-v0``,
  ``lwd_gym/Metaworld-<task>-v3``, ``lwd_gym/Lift-v0``, ``lwd_gym/Can-v0``) without importing
  any simulator; importing :mod:`lwd_gym.envs` calls it.
* :func:`make_env` is ``gymnasium.make`` that first imports the package registering the id's
  namespace when lwd-gym knows it (:data:`KNOWN_NAMESPACES`: ``gym_pusht/PushT-v0`` works
  without a prior ``import gym_pusht``), and turns "not registered" / "not installed" failures
  into an :class:`EnvUnavailableError` naming the env and the ``pip install`` that fixes it.
* :func:`env_extra` / :func:`env_requirements` give the lwd-gym extra an env needs, which
  collected and imported datasets record as Minari ``requirements``.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import re
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec
from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement

# The module, not its ENV_ID: lwd_gym.envs.bimodal loads lwd_gym.data, whose importers and
# recovery import this module while bimodal is still loading.
from lwd_gym.envs import bimodal
from lwd_gym.envs.metaworld import make_metaworld_env, register_metaworld_envs
from lwd_gym.envs.robosuite import ENV_IDS as ROBOSUITE_ENV_IDS

#: The distribution name of this package (what ``pip install`` takes).
DISTRIBUTION = "lwd-gym"

#: Gymnasium namespaces lwd-gym can make envs of: namespace -> (module whose import registers
#: its ids, or None when importing lwd_gym does; lwd-gym extra that installs that module).
KNOWN_NAMESPACES: dict[str, tuple[str | None, str | None]] = {
    "lwd_gym": (None, None),
    "gym_pusht": ("gym_pusht", "pusht"),
    "Meta-World": ("metaworld", "metaworld"),
}

#: Modules of env entry points -> the lwd-gym extra that installs what they import.
_ENTRY_POINT_EXTRAS: dict[str, str] = {
    "lwd_gym.envs.metaworld": "metaworld",
    "lwd_gym.envs.robosuite": "robosuite",
    "gym_pusht": "pusht",
    "metaworld": "metaworld",
    "gymnasium.envs.mujoco": "mujoco",
}

_METAWORLD_ID = re.compile(r"lwd_gym/Metaworld-(?P<task>.+)-v3")

#: What :func:`make_env` turns into an :class:`EnvUnavailableError`: an id that is not
#: registered (NamespaceNotFound, NameNotFound, VersionNotFound), a missing import, or
#: gymnasium's own "pip install ..." error.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (gym.error.UnregisteredEnv, gym.error.DependencyNotInstalled, ImportError)


def register_envs() -> None:
    """Register lwd-gym's Gymnasium ids; idempotent and free of simulator imports.

    Re-registering is skipped (gymnasium warns about it, e.g. after ``importlib.reload``).
    """
    if bimodal.ENV_ID not in gym.registry:
        gym.register(id=bimodal.ENV_ID, entry_point="lwd_gym.envs.bimodal:BimodalEnv", max_episode_steps=100)
    register_metaworld_envs()
    for env_id, (task, _, max_steps) in ROBOSUITE_ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="lwd_gym.envs.robosuite:RobosuiteEnv", kwargs={"task": task}, max_episode_steps=max_steps)


class EnvUnavailableError(ImportError, gym.error.Error):
    """An env that cannot be made here, with what to install (or import) to make it.

    An :class:`ImportError` (something is missing) and a :class:`gymnasium.error.Error` (what
    ``gymnasium.make`` raised before), so existing handlers of either still catch it.

    :ivar env_id: the id that could not be made.
    :ivar requirements: the requirements that were known for it (a dataset's, or the extra's).
    :ivar cause: the original error (also ``__cause__``).
    """

    def __init__(self, message: str, *, env_id: str, requirements: Sequence[str] = (), cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.env_id = env_id
        self.requirements = list(requirements)
        self.cause = cause

    @classmethod
    def from_cause(
        cls, env_id: str, cause: BaseException, requirements: Sequence[str] = (), *, dataset_id: str | None = None
    ) -> EnvUnavailableError:
        """The error for ``env_id`` failing with ``cause``, naming the ``pip install`` that helps.

        ``requirements`` are the ones recorded for the env (a Minari dataset's); without them the
        env's lwd-gym extra (:func:`env_extra`) is named.  ``dataset_id`` says where the env
        was recorded.
        """
        subject = f"the env {env_id!r}" + (f" of Minari dataset {dataset_id!r}" if dataset_id else "")
        namespace = _namespace(env_id)
        if isinstance(cause, gym.error.NamespaceNotFound) and namespace not in KNOWN_NAMESPACES:
            what = (
                f"no Gymnasium env is registered in namespace {namespace!r}: import the package that registers it "
                f"before making the env (or make 'package.module:{env_id}', which gymnasium imports first)"
            )
        elif isinstance(cause, gym.error.UnregisteredEnv):
            what = f"it is not registered ({str(cause).rstrip('.')})"
        else:
            what = f"a dependency is missing ({type(cause).__name__}: {str(cause).rstrip('.')})"
            if namespace is not None and namespace not in KNOWN_NAMESPACES:
                what += f"; install the package that provides the {namespace!r} envs"
        message = f"cannot make {subject}: {what}."
        needed = list(requirements)
        if not needed:
            extra = env_extra(env_id)
            needed = [f"{DISTRIBUTION}[{extra}]"] if extra else []
        if needed:
            missing = missing_requirements(needed)
            recorded = "The dataset requires" if requirements else "It needs"
            status = f"not installed here: {', '.join(missing)}" if missing else "all installed, so the env's own package may be broken or too old"
            message += f" {recorded} {', '.join(needed)} ({status}): pip install {' '.join(repr(r) for r in needed)}"
        return cls(message, env_id=env_id, requirements=needed, cause=cause)


def _namespace(env_id: str) -> str | None:
    """The Gymnasium namespace of ``env_id`` (``"gym_pusht"`` for ``gym_pusht/PushT-v0``), if any.

    ``"module:ns/Name-v0"`` ids are read after the colon; malformed ids give None (gymnasium
    reports them itself).
    """
    try:
        namespace, _, _ = gym.envs.registration.parse_env_id(env_id.rpartition(":")[2])
    except gym.error.Error:
        return None
    return namespace


def env_extra(env: str | EnvSpec) -> str | None:
    """The lwd-gym extra (``pip install 'lwd-gym[EXTRA]'``) that installs what ``env`` needs.

    Read from the entry point of the env's spec (the registered one for an id), else from the
    id's namespace (:data:`KNOWN_NAMESPACES`). None when lwd-gym alone makes it (the two-paths
    task, gymnasium's own envs) or when the env is not one lwd-gym knows.
    """
    spec = env if isinstance(env, EnvSpec) else gym.registry.get(env.rpartition(":")[2])
    if spec is not None and isinstance(spec.entry_point, str):
        module = spec.entry_point.partition(":")[0]
        for prefix, extra in _ENTRY_POINT_EXTRAS.items():
            if module == prefix or module.startswith(prefix + "."):
                return extra
    env_id = env.id if isinstance(env, EnvSpec) else env
    return KNOWN_NAMESPACES.get(_namespace(env_id) or "", (None, None))[1]


def env_requirements(env: str | EnvSpec) -> list[str]:
    """Minari ``requirements`` for a dataset recorded on ``env``: ``["lwd-gym[EXTRA]"]`` with the
    env's extra (:func:`env_extra`), else ``["lwd-gym"]``."""
    extra = env_extra(env)
    return [f"{DISTRIBUTION}[{extra}]" if extra else DISTRIBUTION]


def missing_requirements(requirements: Iterable[str]) -> list[str]:
    """The pip requirements among ``requirements`` (and those of the extras they name, e.g. the
    simulator of ``lwd-gym[pusht]``) that are not installed at a matching version.

    Unlike Minari's own check, which looks at the distribution only, an installed ``lwd-gym``
    without its ``pusht`` extra reports ``gym-pusht==0.1.8`` as missing.  Malformed
    requirements are reported as they are.
    """
    missing: list[str] = []
    seen: set[tuple[str, str]] = set()
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            missing.append(text)
            continue
        _collect_missing(requirement, seen, missing)
    return list(dict.fromkeys(missing))


def _collect_missing(requirement: Requirement, seen: set[tuple[str, str]], missing: list[str]) -> None:
    """Append to ``missing`` what of ``requirement`` (recursively through its extras) is not installed."""
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        missing.append(str(requirement))
        return
    if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
        missing.append(f"{requirement} (installed: {version})")
        return
    for extra in sorted(requirement.extras):
        if (requirement.name, extra) in seen:
            continue
        seen.add((requirement.name, extra))
        for line in importlib.metadata.requires(requirement.name) or []:
            dependency = Requirement(line)
            if dependency.marker is None or not _needed_by_extra(dependency, extra):
                continue
            dependency.marker = None
            _collect_missing(dependency, seen, missing)


def _needed_by_extra(dependency: Requirement, extra: str) -> bool:
    """Whether ``dependency`` is pulled in by ``extra`` here (and not by the base install, whose
    dependencies pip has already checked)."""
    assert dependency.marker is not None
    try:
        return dependency.marker.evaluate({"extra": extra}) and not dependency.marker.evaluate({"extra": ""})
    except UndefinedEnvironmentName:
        return False


def import_env_namespace(env_id: str) -> None:
    """Import the package that registers ``env_id``'s namespace, when lwd-gym knows it.

    ``gym_pusht/...`` imports gym_pusht and ``Meta-World/...`` metaworld; lwd-gym's own ids are
    registered already.  Other namespaces are left alone.  Raises :class:`EnvUnavailableError`
    (naming the extra) when the package is missing.
    """
    module, _ = KNOWN_NAMESPACES.get(_namespace(env_id) or "", (None, None))
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise EnvUnavailableError.from_cause(env_id, err) from err


def make_env(env: str | EnvSpec, /, **kwargs: Any) -> gym.Env:
    """``gymnasium.make(env, **kwargs)`` for any env lwd-gym knows, with a clear error otherwise.

    Before making, the package registering the id's namespace is imported
    (:func:`import_env_namespace`), so ``make_env("gym_pusht/PushT-v0")`` needs no
    ``import gym_pusht``; Metaworld v3 tasks outside the pre-registered ones are registered on
    demand (``lwd_gym/Metaworld-<task>-v3``).  An id or spec that cannot be made because
    something is not registered or not installed raises :class:`EnvUnavailableError` naming
    the env and the ``pip install`` to run (or, for an unknown namespace, saying to import the
    package that registers it).  Other errors (bad kwargs, ...) propagate unchanged.
    """
    env_id = env.id if isinstance(env, EnvSpec) else env
    if not isinstance(env_id, str):
        raise TypeError(f"an env id must be a string or a gymnasium EnvSpec, got {type(env).__name__}")
    try:
        import_env_namespace(env_id)
        if isinstance(env, str) and env not in gym.registry and (match := _METAWORLD_ID.fullmatch(env)):
            return make_metaworld_env(match["task"], **kwargs)
        return gym.make(env, **kwargs)
    except EnvUnavailableError:
        raise
    except UNAVAILABLE_ERRORS as err:
        raise EnvUnavailableError.from_cause(env_id, err) from err
