"""CUDA under bubblewrap: a training runner of a GPU task gets the GPU nodes, driver state and driver libraries
bound in; a validation runner gets none. No GPU here: the binds are built against a fake root."""

from __future__ import annotations

import os

from discovery.sandbox import isolation


def fake_root(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (tmp_path / "dev").mkdir(parents=True, exist_ok=True)
        (tmp_path / "dev" / name).write_text("")
    (tmp_path / "dev" / "nvidia-caps").mkdir()
    (tmp_path / "dev" / "null").write_text("")
    (tmp_path / "proc" / "driver" / "nvidia").mkdir(parents=True)
    return str(tmp_path)


def pairs(args, flag):
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_gpu_binds_cover_the_nodes_the_driver_state_and_the_libraries(tmp_path):
    libs = ["/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/local/nvidia/lib64/libnvidia-ml.so.1",
            "/opt/driver/libnvidia-ptxjitcompiler.so.1"]
    args = isolation.gpu_binds(fake_root(tmp_path), libraries=libs)
    assert pairs(args, "--dev-bind-try") == ["/dev/nvidia-caps", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                                             "/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl"]
    assert "/dev/null" not in args and str(tmp_path) not in " ".join(args)  # inside: the real paths only
    read_only = pairs(args, "--ro-bind-try")
    assert "/proc/driver/nvidia" in read_only
    # /usr and /opt are bound whole already (confine.SYSTEM_READ); a folder outside them is bound read-only
    assert "/usr/local/nvidia/lib64" not in read_only and "/opt/driver" not in read_only
    assert isolation.gpu_binds(fake_root(tmp_path / "x"), libraries=["/run/nvidia/lib/libcuda.so.1"])[-3:] == [
        "--ro-bind-try", "/run/nvidia/lib", "/run/nvidia/lib"]


def test_no_gpu_no_binds(tmp_path):
    assert isolation.gpu_binds(str(tmp_path), libraries=[]) == []


def test_only_gpu_runners_get_the_binds(monkeypatch, tmp_path):
    """bwrap_command(gpu=False) (every validation runner) has no GPU bind even on a host with GPUs."""
    marker = ["--dev-bind-try", "/dev/nvidia0", "/dev/nvidia0"]
    monkeypatch.setattr(isolation, "gpu_binds", lambda: marker)
    monkeypatch.setattr(isolation.shutil, "which", lambda name: "/usr/bin/bwrap")
    monkeypatch.delenv("DISCOVERY_SANDBOX_NO_BWRAP", raising=False)
    seen = []
    monkeypatch.setattr(isolation.subprocess, "run", lambda cmd, **kw: seen.append(cmd) or
                        type("Done", (), {"returncode": 0})())
    plain = isolation.bwrap_command(str(tmp_path))
    gpu = isolation.bwrap_command(str(tmp_path), gpu=True)
    assert "/dev/nvidia0" not in plain
    assert gpu[gpu.index("--dev-bind-try"):][:3] == marker
    assert gpu.index("--dev-bind-try") > gpu.index("--dev")  # after bwrap's fresh /dev, or it would hide them


def test_validation_runners_are_not_gpu_runners():
    import inspect

    from discovery.sandbox import validation

    assert "gpu=" not in inspect.getsource(validation)
    assert inspect.signature(isolation.IsolatedRunner).parameters["gpu"].default is False


def test_cuda_environment_survives_the_scrub():
    from discovery.sandbox import env

    kept = env.scrubbed({"CUDA_VISIBLE_DEVICES": "1", "NVIDIA_VISIBLE_DEVICES": "all", "OPENAI_API_KEY": "k",
                         "NVIDIA_DRIVER_CAPABILITIES": "compute,utility", "PATH": os.environ.get("PATH", "")})
    assert kept["CUDA_VISIBLE_DEVICES"] == "1" and kept["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "OPENAI_API_KEY" not in kept and "NVIDIA_DRIVER_CAPABILITIES" in kept


def test_seccomp_leaves_the_calls_cuda_needs():
    """CUDA drives the GPU through ioctl and mmap on /dev/nvidia*; the filter denies neither (the device nodes
    exist only in GPU runners, so a validation child has nothing to ioctl)."""
    from discovery.sandbox import child

    assert not {"ioctl", "mmap", "munmap", "mprotect", "openat", "madvise"} & set(child.DENIED_SYSCALLS)
