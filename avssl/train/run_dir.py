"""The folder a training run writes into: picked fresh (never a non-empty one), claimed
atomically, checked writable before any work, locked while a process trains in it, and cleared
again when the run fails before its first checkpoint."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from avssl.atomic_write import temp_names, write_text
from avssl.config import Config, dotted_values, dump_yaml, load_config, to_dict
from avssl.errors import AvsslError, ConfigError
from avssl.folder_lock import hold_folder

MIN_FREE_BYTES = 200 * 2**20
CHECKPOINT_FILES = ("last.pt", "best.pt")
RECORD_FILES = ("config.yaml", "metrics.jsonl")  # what a run writes before its first checkpoint
CLAIM = RECORD_FILES[0]  # created exclusively when a run takes its folder
# a run folder made by this process -> the topmost folder made with it (itself, or a parent
# that did not exist: a fresh clone's runs/), so that a failed run removes those too
_MADE_FROM: dict[Path, Path] = {}


def prepare_run_dir(cfg: Config, explicit: str | None) -> tuple[Path, bool]:
    """Pick a fresh run directory (never reusing a non-empty one) and check it is writable.

    Fails now, not after an hour of training, when the folder is unwritable or the disk full.

    Returns:
        The run directory and whether this call created it.
    """
    if explicit:
        run_dir = Path(explicit)
        if run_dir.exists() and not run_dir.is_dir():
            raise AvsslError(f"{run_dir}: run directory is an existing file, not a folder")
        if run_dir.is_symlink() and not run_dir.exists():  # was "exists and is not empty"
            raise AvsslError(
                f"{run_dir}: run directory is a broken symbolic link (to {os.readlink(run_dir)})"
            )
        created = _claim(run_dir)
        if created is None:
            raise AvsslError(
                f"{run_dir}: run directory exists and is not empty (to continue the run in it: "
                "--resume; else an empty or a new folder)"
            )
    else:
        base = Path(cfg.train.runs_dir) / cfg.name
        run_dir, i = base, 1
        while (created := _claim(run_dir)) is None:
            i += 1
            run_dir = base.with_name(f"{base.name}-{i}")
    try:
        check_writable(run_dir)
        (run_dir / CLAIM).write_text(dump_yaml(cfg), encoding="utf-8")
    except BaseException:  # a full disk, a stop: the folder just made for the run goes too
        (run_dir / CLAIM).unlink(missing_ok=True)
        remove_if_empty(run_dir, created)
        raise
    return run_dir, created


def _claim(run_dir: Path) -> bool | None:
    """Take ``run_dir`` for this run if it is free (missing, or an empty folder), by creating its
    ``config.yaml`` exclusively: two runs started together (seeds launched at once) cannot both
    take it, though nothing else is written into it until the data are loaded.

    Returns:
        Whether this call created the folder, or None when it is taken (not an empty folder, or
        claimed by another run first).
    """
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        return None
    created, claimed = not run_dir.exists(), False
    missing = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if created:
            _MADE_FROM[run_dir] = missing[-1] if missing else run_dir
        # mode 0o666 as open() gives (less the umask): the default 0o777 made it executable
        fd = os.open(run_dir / CLAIM, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        claimed = True
        os.close(fd)
    except FileExistsError:
        if run_dir.is_dir() or run_dir.is_symlink() or run_dir.exists():
            return None  # claimed first, or made as a file or a link meanwhile: taken
        # a folder above it is a link to nothing (runs/ on an unmounted disk): every other name
        # fails so too, and the caller's search for a free one never ended
        bad = next((p for p in run_dir.parents if p.is_symlink() and not p.exists()), None)
        why = f"{bad} is a broken symbolic link (to {os.readlink(bad)})" if bad else "it exists"
        raise AvsslError(f"{run_dir}: run directory cannot be made: {why}") from None
    except OSError as err:
        raise AvsslError(f"{run_dir}: run directory is not writable ({err.strerror})") from None
    except BaseException:  # a stop while making the folder or claiming it
        if claimed:
            (run_dir / CLAIM).unlink(missing_ok=True)
        remove_if_empty(run_dir, created)
        raise
    return created


def remove_if_empty(run_dir: Path, created: bool) -> None:
    """Remove ``run_dir`` if this run created it and nothing was written into it, and the
    folders above it made with it that are empty (another run may have written into one)."""
    if not (created and run_dir.is_dir() and not any(run_dir.iterdir())):
        return
    top, folder = _MADE_FROM.pop(run_dir, run_dir), run_dir
    while True:
        try:
            folder.rmdir()
        except OSError:  # not empty: another run's folder is in it
            return
        if folder == top or folder.parent == folder:
            return
        folder = folder.parent


def discard_failed_run(run_dir: Path, created: bool, started_empty: bool) -> None:
    """After a failed run that wrote no checkpoint: remove what it wrote into ``run_dir``.

    Such a folder holds nothing to resume from, only the run's ``config.yaml`` (and maybe its
    ``metrics.jsonl``), yet it would block the next run with the same ``--run-dir``. Those two
    files go when the run began in a folder that was empty (``started_empty``) or not there
    (``created``): nothing of the user's was in it. The folder itself goes only if this run
    created it and nothing else is in it; one the user made stays, empty.
    """
    if not (created or started_empty) or not run_dir.is_dir():
        return
    if any((run_dir / name).exists() for name in CHECKPOINT_FILES):
        return
    for name in RECORD_FILES:
        (run_dir / name).unlink(missing_ok=True)
    remove_if_empty(run_dir, created)


def check_writable(run_dir: Path) -> None:
    """Create ``run_dir`` (and parents) if needed and check that files can be written there.

    Raises:
        AvsslError: the folder cannot be created or written, or its disk has less than
            ``MIN_FREE_BYTES`` free (the caller removes a folder made here that stayed empty).
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test{os.getpid()}"  # every rank checks on resume
        probe.write_bytes(b"x" * 4096)
        probe.unlink(missing_ok=True)  # rank 0 may have cleared it as a stale one (resume)
    except OSError as err:
        raise AvsslError(f"{run_dir}: run directory is not writable ({err.strerror})") from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise AvsslError(f"{run_dir}: only {free / 2**20:.0f} MB free on this disk")


def record_config(run_dir: Path, cfg: Config) -> None:
    """Write ``cfg`` to the run's ``config.yaml``, unless the file already holds these values: a
    run resumed without ``--set`` leaves it as it is, comments included.
    """
    path = run_dir / CLAIM
    try:
        if path.is_file() and to_dict(load_config(path)) == to_dict(cfg):
            return
    except ConfigError:  # not a config: checked on resume (check_config_unedited), replaced here
        pass
    write_text(path, dump_yaml(cfg))


def check_config_unedited(run_dir: Path, saved: Config, cfg: Config, ckpt: Path) -> None:
    """Refuse to resume over a ``config.yaml`` that differs from the checkpoint's config.

    ``--resume`` trains with the config stored in the checkpoint (plus ``--set``) and rewrites
    ``config.yaml``, so an edit made there would be ignored and then lost. An edit that the
    ``--set`` overrides repeat is kept, and reformatting or comments do not count.

    Args:
        run_dir: the run folder.
        saved: the checkpoint's config.
        cfg: the config the resumed run will train with (``saved`` plus ``--set``).
        ckpt: the checkpoint, named in the error.

    Raises:
        ConfigError: ``config.yaml`` is not a readable config, or one of its values is neither
            the checkpoint's nor the resumed run's.
    """
    path = run_dir / CLAIM
    if not path.exists():
        return
    hint = "pass changes as --set KEY=VALUE, and undo the edit or remove the file"
    try:
        edited = dotted_values(load_config(path))
    except ConfigError as err:
        why = str(err).removeprefix(f"{path}: ")
        raise ConfigError(
            f"{path}: not readable as the run's config ({why}); --resume trains with the "
            f"config in {ckpt.name} and would rewrite this file: {hint}"
        ) from None
    old, new = dotted_values(saved), dotted_values(cfg)
    lost = [k for k, v in edited.items() if v != old.get(k) and v != new.get(k)]
    if lost:
        name = ckpt.name
        shown = ", ".join(f"{k}: {old.get(k)!r} in {name}, {edited[k]!r} here" for k in lost[:3])
        more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
        raise ConfigError(
            f"{path}: differs from the config {ckpt.name} was saved with ({shown}{more}); "
            f"--resume trains with {ckpt.name}'s and would overwrite this file: {hint}"
        )


def run_lock(run_dir: Path):
    """Hold an exclusive lock on ``run_dir`` (:func:`avssl.folder_lock.hold_folder`) while a
    process trains in it, so that a second process resuming the same run (a retry, a job
    started twice) is refused instead of both writing its checkpoints and log.

    Raises:
        AvsslError: another process holds the lock.
    """
    return hold_folder(
        run_dir,
        "another process is training this run (it holds the run's lock); wait for it to stop, "
        "or stop it first",
    )


# a temporary file of avssl.atomic_write.replacing, or check_writable's probe, left by a process
# killed while writing it
_TEMP = re.compile(temp_names(CHECKPOINT_FILES + RECORD_FILES) + r"|\.write-test\d+")


def clear_stale_temps(run_dir: Path) -> None:
    """Remove the temporary files of checkpoints and logs that a killed process left in
    ``run_dir``; call it holding :func:`run_lock`, when no other process writes there."""
    for path in run_dir.iterdir():
        if _TEMP.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
