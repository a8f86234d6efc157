"""The benchmark's figures as a person reads them."""

from __future__ import annotations

from typing import Any


def render(f: dict[str, Any]) -> str:
    lines = [
        f"cohort                 {f['size']:,} workers",
        f"rentan                 {f['total_s']:,.1f} s  {f['enrollments_per_s']:.2f} enrollments/s",
        f"floor (bare workflow)  {f['floor_total_s']:,.1f} s  {f['floor_per_s']:.2f} lifecycles/s",
        f"ratio                  {f['ratio']:.3f}  (rentan's time / the floor's)",
        f"CPU ratio              {f['cpu_ratio']:.3f}  (all processes' CPU, rentan / floor)",
        f"single verification    p50 {f['verify_p50_ms']:.0f} ms  p99 {f['verify_p99_ms']:.0f} ms"
        f"  (HTTP, open loop {f['probe_rate_per_s']:.0f}/s, {f['probes']} calls,"
        f" {f['verify_failures']} failed)",
        f"floor update           p50 {f['floor_update_p50_ms']:.0f} ms"
        f"  p99 {f['floor_update_p99_ms']:.0f} ms  (client, same arrival)",
        f"history read           p50 {f['history_p50_ms']:.0f} ms  p95 {f['history_p95_ms']:.0f} ms"
        f"  ({f['history_failures']} failed)",
        f"CPU seconds            worker {f['worker_cpu_s']:.1f}  Temporal {f['temporal_cpu_s']:.1f}"
        f"  API {f['api_cpu_s']:.1f}  BPJS sim {f['bpjs_sim_cpu_s']:.1f}"
        f"  bench clients {f['bench_driver_cpu_s']:.1f}",
        f"  floor                worker {f['floor_worker_cpu_s']:.1f}"
        f"  Temporal {f['floor_temporal_cpu_s']:.1f}  bench clients {f['floor_driver_cpu_s']:.1f}",
        f"peak RSS MiB           worker {f['worker_peak_rss_mb']:.0f}"
        f"  Temporal {f['temporal_peak_rss_mb']:.0f}  API {f['api_peak_rss_mb']:.0f}"
        f"  (floor worker {f['floor_worker_peak_rss_mb']:.0f})",
    ]
    return "\n".join(lines)
