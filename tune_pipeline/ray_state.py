"""Ray Tune's experiment_state-*.json, read without Ray: which state files an
experiment has, and each trial's entry (its JSON state and its error file's
name), streamed so the file's 30 KB per trial are never all held at once.
The file's layout is private to Ray: all knowledge of it is here, checked
against the Ray version RAY_FORMAT_TESTED names (pyproject pins it); a
layout this module does not know is one line naming the file and key.
Also the JSON parser the readers share (`loads`)."""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

from tune_pipeline.errors import UserError
from tune_pipeline.storage import location

try:  # optional: 3.8x json's speed on result rows (BENCHMARKS.md, "Readers at 5,000 trials")
    from orjson import JSONDecodeError as _FastError
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - a dependency, but the readers work without it
    _fast_loads, _FastError = None, ValueError


def loads(text: str):
    """json.loads, by orjson where it is installed.  orjson refuses NaN and
    Infinity, which Ray writes (a diverged loss, a time never set): such a
    text is parsed by json, as before."""
    if _fast_loads is not None:
        try:
            return _fast_loads(text)
        except _FastError:
            pass
    return json.loads(text)



# The Ray minor version whose private experiment_state-*.json layout this
# reader knows (pyproject pins Ray to it).  A half-written file is skipped;
# a whole file in another layout is a format change: one line naming it.
# Ray's public reader (ray.tune.ExperimentAnalysis) needs Ray imported (2.6 s
# CPU, 780 MB), reads a bucket only through Ray's own sync, unpickles, and
# holds every trial's full entry at once; the readers here (status, export,
# plots, the report) import no Ray and stream the file.  All knowledge of the
# layout is in this section, this module.
RAY_FORMAT_TESTED = "2.60"


def format_changed(source, key: str) -> UserError:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = f"Ray {version('ray')} is installed"  # the package's metadata: no import of Ray
    except PackageNotFoundError:
        installed = "Ray is not installed"
    return UserError(f"{source}: {key}: not in the layout this tool reads (Ray {RAY_FORMAT_TESTED}; "
                     f"{installed}); install the Ray version pyproject.toml names")


def state_files(path: Path) -> list[Path]:
    """Oldest first, by the start time in the name (a resumed sweep writes a new
    file): modification times do not order them, Ray's final sync touches all."""
    return sorted(path.glob("experiment_state-*.json"), key=lambda p: p.name)


def ray_state_saved(path) -> bool:
    """Whether Ray saved an experiment state: an experiment whose driver died
    before that (in its first second or so, after tune_pipeline.json and
    Ray's tuner.pkl) never started; `tune resume` starts it."""
    return bool(state_files(location(path)))


def read_state(path: Path, notes: list[str]) -> tuple[list, Path | None]:
    """The trial entries (`entry_record`s, None for an unreadable one) of
    the newest state file that reads whole, and that file; a damaged newer
    one is named in `notes` so a fallback is never silent."""
    states = state_files(path)
    skipped = []
    for state_file in reversed(states):
        try:
            with state_file.open("rb") as stream:
                entries = _state_entries(stream, state_file)
        except OSError:
            entries = None
        if entries is None:  # cut short or unreadable
            skipped.append(state_file.name)
            continue
        if skipped:
            notes.append(f"skipped damaged {', '.join(skipped)}; read {state_file.name} "
                         f"(trials it does not list are read from their folders)")
        return entries, state_file
    if skipped:
        notes.append(f"skipped damaged {', '.join(skipped)}; trials read from their folders")
    return [], None


# Ray writes its state file with json.dump's default separators, trial_data first.
_STATE_HEAD = '{"trial_data": ['
_STATE_CHUNK = 1 << 22
_SPACE = re.compile(r"\s*")


class _Text:
    """A file's text read a chunk at a time, for a parser that keeps its place."""

    def __init__(self, stream):
        self.stream, self.text, self.pos, self.done = stream, "", 0, False
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def more(self) -> bool:
        """Append the next chunk (dropping what was parsed); False at the end."""
        if self.done:
            return False
        data = self.stream.read(_STATE_CHUNK)
        self.done = not data
        self.text = self.text[self.pos:] + self.decoder.decode(data, final=self.done)
        self.pos = 0
        return True

    def skip_space(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            self.pos = _SPACE.match(self.text, self.pos).end()
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos:self.pos + 1]

    def rest(self) -> str:
        while self.more():
            pass
        return self.text[self.pos:]


def _state_entries(stream, source) -> list | None:
    """The trial entries of one state file, each reduced to what we read
    (`_entry_record`) as soon as it is parsed, so the file's strings are never
    all held at once (Ray's entry is about 30 KB per trial: 160 MB at 5,000);
    None when the file is damaged anywhere, as a whole-file parse would say."""
    decoder = json.JSONDecoder()
    text = _Text(stream)
    while len(text.text) < len(_STATE_HEAD) and text.more():
        pass
    if not text.text.startswith(_STATE_HEAD):  # another layout: the whole file at once
        try:
            state = json.loads(text.rest())
        except (ValueError, RecursionError):
            return None
        if not isinstance(state, dict) or not isinstance(state.get("trial_data"), list):
            raise format_changed(source, "trial_data")
        return [entry_record(entry) for entry in state["trial_data"]]
    text.pos = len(_STATE_HEAD)
    entries = []
    char = text.skip_space()
    while char not in ("]", ""):
        while True:
            try:
                entry, text.pos = decoder.raw_decode(text.text, text.pos)
                break
            except (ValueError, RecursionError):
                if not text.more():  # damaged, not merely cut by the chunk
                    return None
        entries.append(entry_record(entry))
        char = text.skip_space()
        if char != ",":
            break
        text.pos += 1
        char = text.skip_space()
    if char != "]":
        return None
    text.pos += 1
    rest = text.rest().strip()  # the runner's own data: small, checked whole
    try:
        tail = json.loads("{" + rest[1:]) if rest.startswith(",") else None if rest != "}" else {}
    except (ValueError, RecursionError):
        return None
    return entries if isinstance(tail, dict) else None


# Ray's run metadata is written with indent 2, the error file's name among its
# first keys: found there without parsing the rest (the bulk: the pickled
# checkpoint manager, and a running trial's analysis of every metric), else by a full parse.
_ERROR_FILENAME = re.compile(r'^  "error_filename": (null|"(?:[^"\\]|\\.)*")', re.MULTILINE)


def entry_record(entry) -> tuple[dict, str | None] | None:
    """(the trial's JSON state, its error file's name or None), or None when
    the entry is not in the layout we know."""
    try:
        trial_json, runtime_json = entry
        info = loads(trial_json)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("trial_id"), str) or not isinstance(runtime_json, str):
        return None
    match = _ERROR_FILENAME.search(runtime_json, 0, 4096)
    try:
        runtime = {"error_filename": json.loads(match.group(1))} if match else json.loads(runtime_json)
    except (ValueError, RecursionError):
        return None
    error_file = runtime.get("error_filename") if isinstance(runtime, dict) else None
    info = {k: info.get(k) for k in ("trial_id", "status", "config", "relative_logdir")}  # the rest is dropped
    return info, str(error_file) if error_file else None
