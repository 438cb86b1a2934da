"""The deferred mode's events file, ``<run_dir>/tracking.jsonl``: jobs append one JSON line per event
(``append_event``), and one local process replays every run dir's new lines into the store (``import_deferred``).

An event is ``{"event": kind, "time": ms since the epoch, ...}``, the kinds being ``start`` (``rule``, ``run_name``,
``tags``), ``params`` (``params``), ``tags`` (``tags``), ``metrics`` (``step``, ``metrics``), ``dataset`` (``name``,
``digest``, ``source``, ``context``), ``artifact`` (``path``, ``artifact_path``) and ``end`` (``status``)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .store import client_for, init_store, normalize_uri, read_state, resumable_run, write_state
from .writer import MlflowWriter, now_ms

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

EVENTS_FILE = "tracking.jsonl"


# -------------------------------------------------------------------------------------------------------- writing

def append_event(run_dir: Path, kind: str, **fields) -> None:
    """The event ``kind`` with ``fields``, stamped with the time now, as a line of ``run_dir``'s events file."""
    _append_line(run_dir / EVENTS_FILE, json.dumps({"event": kind, "time": now_ms(), **fields}) + "\n")


def _append_line(path: Path, line: str) -> None:
    """One JSON line per event, flushed at once. A job killed mid-line leaves a line without its newline; the next
    event starts on a fresh line, so only that one event is lost."""
    with open(path, "a+b") as stream:
        if stream.seek(0, os.SEEK_END) > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":
                line = "\n" + line
        stream.write(line.encode())
        stream.flush()


# -------------------------------------------------------------------------------------------------------- reading

def _complete_lines(path: Path) -> list[str]:
    """The newline-terminated lines of ``path`` (a line still being written is left for the next import)."""
    lines = path.read_bytes().decode(errors="replace").split("\n")
    return lines[:-1]


def _parse_event(line: str, path: Path, number: int) -> dict | None:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or "event" not in event:
        log.warning("%s line %d is not a tracking event (a job killed while writing?): skipped", path, number)
        return None
    return event


# ------------------------------------------------------------------------------------------------------ importing

def import_deferred(runs_dir, uri: str, experiment: str, artifact_location) -> list[str]:
    """Replay every ``tracking.jsonl`` under ``runs_dir`` into the store, one MLflow run per run dir, and return the
    run ids. Creates the store and experiment when needed (this is the one process writing to the store).
    Idempotent: ``tracking.json`` counts the lines already imported, and the next import adds only later ones."""
    uri = normalize_uri(uri)
    experiment_id = init_store(uri, experiment, artifact_location)
    client = client_for(uri)
    run_ids = []
    for events_file in sorted(Path(runs_dir).glob(f"**/{EVENTS_FILE}")):
        run_ids.append(_import_run_dir(client, uri, experiment, experiment_id, events_file))
    return run_ids


def _import_run_dir(client: MlflowClient, uri: str, experiment: str, experiment_id: str, events_file: Path) -> str:
    run_dir = events_file.parent
    lines = _complete_lines(events_file)
    state = read_state(run_dir)
    run_id = resumable_run(client, state, uri, experiment, experiment_id)
    done = int(state.get("imported_lines", 0)) if run_id is not None else 0
    if done > len(lines):
        log.warning("%s has %d lines but %d were imported: the file was replaced; importing it again into run %s",
                    events_file, len(lines), done, run_id)
        done = 0
    events = [(number, _parse_event(line, events_file, number))
              for number, line in enumerate(lines[done:], start=done + 1)]
    events = [event for _, event in events if event is not None]
    if run_id is None:
        start = next((event for event in events if event["event"] == "start"), {})
        run_id = client.create_run(experiment_id, start_time=start.get("time"),
                                   run_name=start.get("run_name")).info.run_id
        # Remember the run before replaying, so that an import that dies half-way continues this run next time
        # (re-logged metrics are deduplicated by MLflow, params and tags are the same values).
        write_state(run_dir, run_id=run_id, uri=uri, experiment=experiment, mode="deferred", imported_lines=0)
    if events:
        _replay(MlflowWriter(client, run_id), events, run_dir)
    write_state(run_dir, run_id=run_id, uri=uri, experiment=experiment, mode="deferred", imported_lines=len(lines))
    return run_id


def _replay(writer: MlflowWriter, events: list[dict], run_dir: Path) -> None:
    """Events in their order; consecutive metric events go to MLflow in one batch. The run ends with the status of
    the last job's end event, or stays RUNNING when the last job started but has not ended (yet)."""
    metrics: list[tuple[str, float, int, int]] = []
    last_start = last_end = None

    def flush():
        writer.log_metrics(metrics)
        metrics.clear()

    for event in events:
        kind = event["event"]
        if kind == "metrics":
            step = int(event.get("step", 0))
            metrics.extend((key, float(value), event["time"], step) for key, value in event["metrics"].items())
            continue
        flush()
        if kind == "start":
            last_start, last_end = event, None
            writer.set_tags(event.get("tags", {}))
        elif kind == "end":
            last_end = event
        elif kind == "params":
            writer.log_params(event["params"])
        elif kind == "tags":
            writer.set_tags(event["tags"])
        elif kind == "dataset":
            writer.log_dataset(event["name"], event["digest"], event["source"], event.get("context", "training"))
        elif kind == "artifact":
            path = run_dir / event["path"]  # an absolute event path stays absolute
            if path.exists():
                writer.log_artifact(path, event.get("artifact_path"))
            else:
                log.warning("artifact %s logged by a deferred job is gone; not imported", path)
        else:
            log.warning("unknown tracking event %r in %s: skipped", kind, run_dir / EVENTS_FILE)
    flush()
    if last_end is not None:
        writer.client.set_terminated(writer.run_id, status=last_end.get("status", "FINISHED"),
                                     end_time=last_end["time"])
    elif last_start is not None:
        writer.client.update_run(writer.run_id, status="RUNNING")
