"""modelfleet / GPU: dcgm-exporter's counters and node_exporter (utilisation, memory, temperature, power, errors)."""

from __future__ import annotations

from boards.panels import (
    GREEN,
    HOST,
    RATE,
    Board,
    datasource_variable,
    graph,
    host_variable,
    query,
    single,
    thresholds,
    timeline,
    value_map,
    variable,
)


def gpu() -> Board:
    sel = f'{HOST}, gpu=~"$gpu"'
    legend = "{{host}} GPU {{gpu}}"

    def per_gpu(metric: str) -> str:
        return f"max by (host, gpu) ({metric}{{{sel}}})"

    board = Board(
        "modelfleet-gpu",
        "modelfleet / GPU",
        "GPU hosts from dcgm-exporter's default counters and node_exporter: utilisation, memory, temperature, "
        "power, and errors (XID, row remapping).",
        [
            datasource_variable(),
            host_variable("DCGM_FI_DEV_GPU_UTIL"),
            variable("gpu", "GPU", f"label_values(DCGM_FI_DEV_GPU_UTIL{{{HOST}}}, gpu)"),
        ],
    )
    board.row("Overview").add(
        single(
            "GPUs",
            "GPUs reporting to dcgm-exporter.",
            query(f"count(DCGM_FI_DEV_GPU_UTIL{{{sel}}})"),
            "none",
            decimals=0,
        ),
        single(
            "Mean utilisation",
            "Mean GPU utilisation of the selected GPUs.",
            query(f"avg(DCGM_FI_DEV_GPU_UTIL{{{sel}}})"),
            "percent",
            decimals=0,
        ),
        single(
            "Memory used",
            "Framebuffer used / (used + free), all selected GPUs.",
            query(
                f"sum(DCGM_FI_DEV_FB_USED{{{sel}}}) / (sum(DCGM_FI_DEV_FB_USED{{{sel}}}) + "
                f"sum(DCGM_FI_DEV_FB_FREE{{{sel}}}))"
            ),
            "percentunit",
            decimals=0,
            steps=thresholds(GREEN, (0.85, "orange"), (0.95, "red")),
        ),
        single(
            "Hottest GPU",
            "Highest GPU temperature.",
            query(f"max(DCGM_FI_DEV_GPU_TEMP{{{sel}}})"),
            "celsius",
            steps=thresholds(GREEN, (80, "orange"), (88, "red")),
        ),
        single(
            "Power draw",
            "Total power draw of the selected GPUs.",
            query(f"sum(DCGM_FI_DEV_POWER_USAGE{{{sel}}})"),
            "watt",
        ),
        single(
            "GPUs with XID errors",
            "GPUs whose last XID error is not 0 (see the XID panel).",
            query(f"count(DCGM_FI_DEV_XID_ERRORS{{{sel}}} > 0) or vector(0)"),
            "none",
            decimals=0,
            steps=thresholds(GREEN, (1, "red")),
        ),
    )
    board.row("Utilisation").add(
        graph(
            "GPU utilisation",
            "Share of time a kernel was running (DCGM_FI_DEV_GPU_UTIL).",
            [query(per_gpu("DCGM_FI_DEV_GPU_UTIL"), legend)],
            "percent",
            maximum=100,
        ),
        graph(
            "Memory copy utilisation",
            "Share of time the memory was being read or written.",
            [query(per_gpu("DCGM_FI_DEV_MEM_COPY_UTIL"), legend)],
            "percent",
            maximum=100,
        ),
        graph(
            "Tensor core and engine activity (DCP)",
            "Profiling counters of datacenter GPUs (Volta and newer): "
            "tensor pipe and graphics engine active ratios; empty on GPUs without DCP support.",
            [
                query(per_gpu("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"), "tensor " + legend),
                query(per_gpu("DCGM_FI_PROF_GR_ENGINE_ACTIVE"), "engine " + legend),
                query(per_gpu("DCGM_FI_PROF_DRAM_ACTIVE"), "DRAM " + legend),
            ],
            "percentunit",
            maximum=1,
        ),
        graph(
            "PCIe throughput",
            "Bytes per second over PCIe (DCP counters), transmitted and received.",
            [
                query(per_gpu("DCGM_FI_PROF_PCIE_TX_BYTES"), "tx " + legend),
                query(per_gpu("DCGM_FI_PROF_PCIE_RX_BYTES"), "rx " + legend),
            ],
            "Bps",
        ),
    )
    board.row("Memory, temperature and power").add(
        graph(
            "Framebuffer memory used",
            "GPU memory in use (MiB as reported by DCGM).",
            [query(per_gpu("DCGM_FI_DEV_FB_USED"), legend)],
            "mbytes",
            width=8,
        ),
        graph(
            "Framebuffer memory free",
            "GPU memory free.",
            [query(per_gpu("DCGM_FI_DEV_FB_FREE"), legend)],
            "mbytes",
            width=8,
        ),
        graph(
            "Temperature",
            "GPU and memory temperature.",
            [
                query(per_gpu("DCGM_FI_DEV_GPU_TEMP"), "GPU " + legend),
                query(per_gpu("DCGM_FI_DEV_MEMORY_TEMP"), "memory " + legend),
            ],
            "celsius",
            width=8,
            steps=thresholds(GREEN, (80, "orange"), (88, "red")),
        ),
        graph("Power draw", "Power in watts.", [query(per_gpu("DCGM_FI_DEV_POWER_USAGE"), legend)], "watt", width=8),
        graph(
            "Energy",
            "Energy used per interval, from the total-energy counter (mJ).",
            [
                query(
                    f"max by (host, gpu) (increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{sel}}}[{RATE}])) / 1000",
                    legend,
                )
            ],
            "joule",
            width=8,
        ),
        graph(
            "Clocks",
            "SM and memory clocks (MHz).",
            [
                query(per_gpu("DCGM_FI_DEV_SM_CLOCK"), "SM " + legend),
                query(per_gpu("DCGM_FI_DEV_MEM_CLOCK"), "memory " + legend),
            ],
            "suffix:MHz",
            width=8,
        ),
    )
    board.row("Errors").add(
        timeline(
            "XID errors",
            "The last XID error each GPU reported (0: none). XIDs 48, 63, 64, 74, 79, 94, 95 "
            "usually mean the GPU needs attention; see NVIDIA's XID catalogue.",
            [query(per_gpu("DCGM_FI_DEV_XID_ERRORS"), legend)],
            value_map({"0": ("no error", "green")}),
            width=12,
        ),
        graph(
            "Memory errors: remapped rows (ECC)",
            "Rows remapped after correctable and uncorrectable ECC errors "
            "(Ampere and newer). dcgm-exporter's default counters export row remapping; its ECC_*_TOTAL counters "
            "are off by default.",
            [
                query(
                    f"max by (host, gpu) (increase(DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{{sel}}}[$__range]))",
                    "uncorrectable " + legend,
                ),
                query(
                    f"max by (host, gpu) (increase(DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS{{{sel}}}[$__range]))",
                    "correctable " + legend,
                ),
                query(per_gpu("DCGM_FI_DEV_ROW_REMAP_FAILURE"), "remap failed " + legend),
            ],
            "short",
            width=12,
            draw="bars",
        ),
        graph(
            "PCIe replays / s",
            "PCIe retries: a rising rate points at a bad link or riser.",
            [query(f"max by (host, gpu) (rate(DCGM_FI_DEV_PCIE_REPLAY_COUNTER{{{sel}}}[{RATE}]))", legend)],
            "ops",
            width=12,
        ),
        graph(
            "NVLink bandwidth",
            "NVLink traffic counter, all lanes.",
            [query(f"max by (host, gpu) (rate(DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{{{sel}}}[{RATE}]))", legend)],
            "short",
            width=12,
        ),
    )
    board.row("Host").add(
        graph(
            "CPU busy",
            "Share of CPU time not idle, per host (node_exporter).",
            [query(f'1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle", {HOST}}}[{RATE}]))', "{{host}}")],
            "percentunit",
            width=8,
            maximum=1,
        ),
        graph(
            "Memory available",
            "Memory available for new work, per host.",
            [query(f"node_memory_MemAvailable_bytes{{{HOST}}} / node_memory_MemTotal_bytes{{{HOST}}}", "{{host}}")],
            "percentunit",
            width=8,
            maximum=1,
        ),
        graph(
            "Free disk space",
            "Free space of each host's root and /var/lib filesystems (model repository).",
            [
                query(
                    f'node_filesystem_avail_bytes{{{HOST}, fstype!~"tmpfs|overlay|squashfs", '
                    f'mountpoint=~"/|/var|/var/lib|/var/lib/modelfleet"}} / node_filesystem_size_bytes{{{HOST}, '
                    f'fstype!~"tmpfs|overlay|squashfs", mountpoint=~"/|/var|/var/lib|/var/lib/modelfleet"}}',
                    "{{host}} {{mountpoint}}",
                )
            ],
            "percentunit",
            width=8,
            maximum=1,
        ),
    )
    return board
