"""Prometheus metrics of the embedding server: ``GET /metrics`` in the text exposition format
(version 0.0.4), written here rather than through a client library (the format is a few lines of
text; the server's extra stays two packages).

What it counts, each with a ``model`` label (the name ``/v1/models`` lists; empty where no model
served the request: probes, ``/metrics``, a request refused before its model was known):

- ``jinaclip_requests_total`` (counter): HTTP requests answered, by ``route`` (the app's path
  the request asked for, ``other`` for a path it does not have, so that scanners cannot grow the
  label set), ``method`` and ``status``; those refused by the auth and body-limit middlewares
  included. A client gone before its answer counts as status 499.
- ``jinaclip_request_errors_total`` (counter): the same for statuses 400 and above, by
  ``route`` and ``status``.
- ``jinaclip_request_duration_seconds`` (histogram): from the request's arrival to the end of
  its answer, by ``route``.
- ``jinaclip_embedded_items_total`` (counter): inputs handed to the model, by ``modality``
  (those of a model call that failed included: its requests count as errors).
- ``jinaclip_batch_size`` (histogram): inputs per model call (see :mod:`.batcher`).
- ``jinaclip_queue_depth`` (gauge): requests waiting for the model.

The HTTP counts are kept by :class:`RequestMetrics`, an ASGI middleware around the whole app;
the model's, by each model's :class:`~.batcher.MicroBatcher` (read when scraped).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .batcher import MicroBatcher

__all__ = ["CONTENT_TYPE", "MODEL_LABEL", "Metrics", "PrometheusText", "RequestMetrics"]

#: the media type of the text exposition format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: the ASGI scope key under which a route names the model that served its request
MODEL_LABEL = "jinaclip.model"
#: upper bounds of the request-duration buckets, in seconds (up to the default request timeout)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: upper bounds of the batch-size buckets, in inputs (up to the default limit of items per request)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
#: the status of a request whose client left before it was answered (nginx's)
CLIENT_GONE = 499


class PrometheusText(PlainTextResponse):
    """A response in the text exposition format."""

    media_type = CONTENT_TYPE


class _Histogram:
    """Observed values: how many fell in each bucket (not cumulative; the last one is ``+Inf``),
    their sum and their count."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)
        self.total: float = 0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        self.buckets[index] += times
        self.total += value * times
        self.count += times


#: a metric's samples: (labels, value) for counters and gauges, (labels, histogram) for histograms
Samples = Iterable[tuple[dict[str, str], float]]


class Metrics:
    """The server's metrics: the HTTP counts recorded here (on the event loop), and the models'
    counts read from their batchers when :meth:`render` writes them all.

    Args:
        batchers: each served model's batcher, by the model's name.
    """

    def __init__(self, batchers: Mapping[str, MicroBatcher]) -> None:
        self.batchers = batchers
        #: (route, method, status, model) -> requests answered
        self.requests: Counter[tuple[str, str, str, str]] = Counter()
        #: (route, model) -> their durations
        self.durations: dict[tuple[str, str], _Histogram] = {}

    def record(self, route: str, method: str, status: int, model: str, seconds: float) -> None:
        """Count one answered request."""
        self.requests[route, method, str(status), model] += 1
        self.durations.setdefault((route, model), _Histogram(LATENCY_BUCKETS)).observe(seconds)

    async def endpoint(self) -> PrometheusText:
        """The server's metrics in Prometheus' text exposition format (version 0.0.4)."""
        return PrometheusText(self.render())

    def render(self) -> str:
        """Every metric in the text exposition format."""
        requests = sorted(self.requests.items())
        errors: Counter[tuple[str, str, str]] = Counter()
        for (route, _, status, model), count in requests:
            if int(status) >= 400:
                errors[route, status, model] += count
        stats = {name: batcher.stats_snapshot() for name, batcher in self.batchers.items()}
        sizes = {name: _Histogram(BATCH_BUCKETS) for name in stats}
        for name, counts in stats.items():
            for size, times in counts.batch_sizes.items():
                sizes[name].observe(size, times)
        lines = [
            *_counter(
                "jinaclip_requests_total", "HTTP requests answered, by route, method, status and model.",
                ((_named(("route", "method", "status", "model"), key), count) for key, count in requests),
            ),
            *_counter(
                "jinaclip_request_errors_total", "HTTP requests answered with a status of 400 or above.",
                ((_named(("route", "status", "model"), key), count) for key, count in sorted(errors.items())),
            ),
            *_histogram(
                "jinaclip_request_duration_seconds", "Seconds from a request's arrival to the end of its answer.",
                ((_named(("route", "model"), key), durations) for key, durations in sorted(self.durations.items())),
            ),
            *_counter(
                "jinaclip_embedded_items_total", "Inputs handed to the model, by modality.",
                (({"model": name, "modality": modality}, counts.modality_items[modality])
                 for name, counts in stats.items() for modality in ("text", "image")),
            ),
            *_histogram("jinaclip_batch_size", "Inputs per model call.", (({"model": n}, h) for n, h in sizes.items())),
            *_metric(
                "jinaclip_queue_depth", "gauge", "Requests waiting for the model.",
                (({"model": name}, batcher.queued) for name, batcher in self.batchers.items()),
            ),
        ]  # fmt: skip
        return "\n".join(lines) + "\n"


def _named(names: tuple[str, ...], values: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(names, values, strict=True))


def _metric(name: str, kind: str, help: str, samples: Samples) -> list[str]:
    """A metric's ``# HELP`` and ``# TYPE`` lines, and a line per sample."""
    return [f"# HELP {name} {help}", f"# TYPE {name} {kind}"] + [
        f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples
    ]


def _counter(name: str, help: str, samples: Samples) -> list[str]:
    return _metric(name, "counter", help, samples)


def _histogram(name: str, help: str, histograms: Iterable[tuple[dict[str, str], _Histogram]]) -> list[str]:
    """A histogram metric: for each label set, its cumulative buckets, sum and count."""
    lines = [f"# HELP {name} {help}", f"# TYPE {name} histogram"]
    for labels, histogram in histograms:
        cumulative = 0
        for bound, count in zip([*histogram.bounds, float("inf")], histogram.buckets, strict=True):
            cumulative += count
            lines.append(f"{name}_bucket{_labels({**labels, 'le': _number(float(bound))})} {cumulative}")
        lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
        lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
    return lines


def _labels(labels: dict[str, str]) -> str:
    """``{name="value",...}``, each value escaped as the format says (backslash, quote, newline)."""

    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{name}="{escape(value)}"' for name, value in labels.items()) + "}"


def _number(value: float) -> str:
    """A sample value or a bucket bound: an int as it is, a float as Python writes it (``1.0``,
    as Prometheus' own clients write bounds), infinity as ``+Inf``."""
    if isinstance(value, int):
        return str(value)
    return "+Inf" if value == float("inf") else repr(value)


#: the methods the ``method`` label names; any other is ``other``
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestMetrics:
    """ASGI middleware counting every HTTP request of the app into ``metrics`` (see the module docstring).

    Args:
        routes: the app's paths, the only ``route`` label values besides ``other``.
        model_of: the model label of a path whose route does not name one in the scope
            (under :data:`MODEL_LABEL`).
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, routes: frozenset[str], model_of: Callable[[str], str]
    ) -> None:
        self.app, self.metrics, self.routes, self.model_of = app, metrics, routes, model_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), CLIENT_GONE

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # answered 500 by the server, if it could still answer
            status = 500 if status == CLIENT_GONE else status
            raise
        finally:
            path, method = scope["path"], scope["method"]
            route = path if path in self.routes else "other"
            model = scope.get(MODEL_LABEL) or self.model_of(path)
            self.metrics.record(route, method if method in _METHODS else "other", status, model, time.perf_counter() - start)  # fmt: skip
