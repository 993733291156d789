"""Settings of one fusion search: typed, validated in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

from configs.duration import parse_duration as parse_budget  # noqa: F401  (fusion.search's API)
from configs.errors import UserError

from .finetune import DataSettings, FinetuneConfig
from .measure import LatencyConfig, check_device
from .tasks import get_benchmark
from .zoo import ZooSettings


@dataclass(frozen=True)
class SearchConfig:
    benchmark: str  # fusion.list_benchmarks() name
    out: str  # output folder: log, resolved config, candidates' weights and .tflite files
    acc_drop: float = 0.01  # largest allowed absolute accuracy drop of the worst task, in [0, 1]
    budget_s: float = 1200.0  # wall-time budget of the search (a resumed search counts time already spent)
    max_iterations: int | None = None  # stop after this many candidates (None: only the budget)
    device: str = "host"  # latency target, see fusion.measure.list_devices() (android_runtime's devices)
    device_kwargs: dict = field(default_factory=dict)  # get_device(device, **device_kwargs): serial, adb_host, ...
    latency_stat: str = "median_us"  # LatencyStats field the search minimises
    relaxed: bool = True  # allow merges across shape mismatches (with adapters)
    savings_bias: float = 4.0  # prefer mutations that remove more parameters (see mutation.random_mutation)
    elite_size: int = 4  # valid graphs kept as restart points
    elite_prob: float = 0.3  # chance an iteration mutates an elite graph instead of the current one
    temperature: float = 0.05  # initial SA temperature, as a relative latency increase accepted with p=1/e
    cooling: float = 0.9  # temperature factor per iteration
    rule_filter: bool = True  # skip candidates whose sharing is a superset of a failed one
    seeds: bool = True  # try fusion.mutation.sharing_seeds first (cheapest first)
    skip_slow: bool = True  # no fine-tuning for a candidate the annealing would reject on its measured latency
    rescue_epochs: int = 2  # extra epochs for an invalid candidate that would be a new best (0: none)
    rescue_margin: float = 2.0  # ... when its worst accuracy drop is at most rescue_margin * acc_drop
    inherit: bool = True  # start fine-tuning from the parent candidate's fine-tuned weights (when it has them)
    measure_separate: bool = True  # also time each task network as its own .tflite (the separate deployment)
    latency_store: str | None = None  # JSON-lines file of measured latencies by graph, reused across searches
    #   (a latency depends on the graph, dtype, device and timing settings, not on the weights)
    seed: int = 0  # seed of mutations and fine-tuning
    cache_dir: str | None = None  # zoo cache (default ~/.cache/nnsplice/fusion)
    zoo: ZooSettings = field(default_factory=ZooSettings)  # settings the task networks were trained with
    data: DataSettings = field(default_factory=DataSettings)  # fine-tuning / test subsets
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # accuracy recovery
    latency: LatencyConfig = field(default_factory=LatencyConfig)  # conversion and timing

    def validate(self) -> "SearchConfig":
        """Raises UserError naming the bad setting."""
        get_benchmark(self.benchmark)
        check_device(self.device)
        if not 0.0 <= self.acc_drop <= 1.0:
            raise UserError(f"--acc-drop {self.acc_drop}: an absolute accuracy drop must be in [0, 1] (e.g. 0.01)")
        if self.budget_s <= 0:
            raise UserError(f"--budget {self.budget_s:g} s: must be positive (e.g. 20m, 90s, 1h)")
        if self.latency_stat not in ("min_us", "median_us", "mean_us", "p90_us"):
            raise UserError(f"latency_stat {self.latency_stat!r}: allowed are min_us, median_us, mean_us, p90_us")
        if self.finetune.epochs < 1:
            raise UserError(f"--epochs {self.finetune.epochs}: must be >= 1")
        if self.finetune.warmup_epochs < 0 or self.rescue_epochs < 0:
            raise UserError(f"--warmup-epochs {self.finetune.warmup_epochs} / --rescue-epochs {self.rescue_epochs}: "
                            f"must be >= 0")
        return self

    def filters(self) -> dict[str, bool]:
        """Which filters and search aids are on (recorded in the summary)."""
        return {"rule": self.rule_filter, "predictive": self.finetune.predictive, "seeds": self.seeds,
                "skip_slow": self.skip_slow, "rescue": self.rescue_epochs > 0}
