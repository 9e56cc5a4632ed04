"""Traffic for ratesim: arrival processes, the user population and trace replay.

Synthetic kinds (Poisson, piecewise, flash crowd, diurnal, MMPP) are drawn by exact inversion
of the cumulative rate; traces are read from CSV or Parquet. Everything is integer
microseconds from the run start and reproducible from the seed; see
:mod:`ratesim.traffic.generate` for the draw order and the chunking guarantee.
"""

from .arrivals import Arrivals
from .generate import (
    ArrivalGenerator,
    expected_count,
    generate_arrivals,
    iter_arrivals,
    trace_arrivals,
)
from .population import Population, build_population, population_table
from .specs import (
    DiurnalTraffic,
    FlashCrowdTraffic,
    MMPPTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
    PopulationSpec,
    RateSegment,
    TraceTraffic,
    TrafficSpec,
    parse_traffic,
    scale_traffic,
)
from .trace import TraceError, read_trace

__all__ = [
    "ArrivalGenerator",
    "Arrivals",
    "DiurnalTraffic",
    "FlashCrowdTraffic",
    "MMPPTraffic",
    "PiecewiseTraffic",
    "PoissonTraffic",
    "Population",
    "PopulationSpec",
    "RateSegment",
    "TraceError",
    "TraceTraffic",
    "TrafficSpec",
    "build_population",
    "expected_count",
    "generate_arrivals",
    "iter_arrivals",
    "parse_traffic",
    "population_table",
    "read_trace",
    "scale_traffic",
    "trace_arrivals",
]
