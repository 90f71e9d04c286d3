"""Broken and hostile candidate losses, each with the check (or static rule) that must reject it."""

from __future__ import annotations

SIG = ("def loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, "
       "reference_rejected_logps, beta):\n")
MARGIN = ("    margin = (policy_chosen_logps - reference_chosen_logps) - "
          "(policy_rejected_logps - reference_rejected_logps)\n")


def make(body: str, imports: str = "import torch\nimport torch.nn.functional as F\n") -> str:
    return imports + "\n\n" + SIG + MARGIN + body


# name -> (code, expected error check)
BROKEN = {
    "nan": (make("    return torch.log(margin - 1000)\n"), "finite"),
    "inf": (make("    return torch.exp(-beta * margin * 100)\n"), "finite"),
    "scalar": (make("    return -F.logsigmoid(beta * margin).mean()\n"), "shape"),
    "wrong_shape": (make("    return -F.logsigmoid(beta * margin).unsqueeze(1).expand(-1, 2)\n"), "shape"),
    "ignores_rejected": (make("    return -F.logsigmoid(beta * (policy_chosen_logps - reference_chosen_logps))\n"),
                         "gradient"),
    "detached": (make("    return -F.logsigmoid(beta * margin).detach()\n"), "gradient"),
    "in_place": (make("    reference_chosen_logps += 1.0\n    return -F.logsigmoid(beta * margin)\n"), "inplace"),
    "in_place_index": (make("    reference_rejected_logps[0] = 0.0\n    return -F.logsigmoid(beta * margin)\n"),
                       "inplace"),
    "aliases_input": (make("    return reference_chosen_logps\n"), "alias"),
    "raises": (make("    return margin / 0 if False else undefined_helper(margin)\n"), "static"),
    "raises_at_runtime": (make("    return -F.logsigmoid(beta * margin) + torch.stack([margin, margin[:1]])\n"),
                          "runs"),
    "too_slow": (make("    out = margin * 0\n    for i in range(200000):\n        out = out + 0.0\n"
                      "    return -F.logsigmoid(beta * margin) + out\n"), "speed"),
    "python_float": (make("    return 0.5\n"), "type"),
    "syntax": ("def loss(:\n    return 1\n", "static"),
    "wrong_signature": ("import torch\n\n\ndef loss(chosen, rejected, beta):\n    return chosen - rejected\n",
                        "static"),
}

# name -> (code, expected error check); static rejections are additionally checked for the rule
HOSTILE = {
    "read_env": (make("    key = os.environ['OPENAI_API_KEY']\n    return margin\n",
                      "import os\nimport torch\n"), "static"),
    "open_file": (make("    open('/tmp/pwned', 'w').write('x')\n    return -margin\n"), "static"),
    "torch_save": (make("    torch.save(margin, '/tmp/pwned.pt')\n    return -margin\n"), "static"),
    "numpy_tofile": (make("    policy_chosen_logps.detach().numpy().tofile('/tmp/pwned')\n    return -margin\n"),
                     "static"),
    "torch_from_file": (make("    x = torch.from_file('/etc/passwd', size=10)\n    return -margin\n"), "static"),
    "torch_load_pickle": (make("    state = torch.load('/tmp/evil.pt', weights_only=False)\n    return -margin\n"),
                          "static"),
    "torch_os": (make("    torch.os.system('touch /tmp/pwned')\n    return -margin\n"), "static"),
    "torch_sys": (make("    mods = torch.sys.modules\n    return -margin\n"), "static"),
    "socket": (make("    s = socket.socket()\n    return -margin\n", "import socket\nimport torch\n"), "static"),
    "subprocess_attr": (make("    torch.utils.cpp_extension.subprocess.run(['sh'])\n    return -margin\n"),
                        "static"),
    "extension": (make("    torch.utils.cpp_extension.load_inline('x', 'int f(){}')\n    return -margin\n"),
                  "static"),
    "hub": (make("    torch.hub.load('evil/repo', 'model')\n    return -margin\n"), "static"),
    "ops": (make("    return torch.ops.aten.neg(margin)\n"), "static"),
    "global_state": (make("    torch.manual_seed(0)\n    torch.set_num_threads(64)\n    return -margin\n"),
                     "static"),
    "set_default_dtype": (make("    torch.set_default_dtype(torch.float16)\n    return -margin\n"), "static"),
    "dunder_escape": (make("    c = ().__class__.__bases__[0].__subclasses__()\n    return -margin\n"), "static"),
    "getattr_escape": (make("    g = getattr(torch, 'lo' + 'ad')\n    return -margin\n"), "static"),
    "format_escape": (make("    s = '{0.__class__}'.format(margin)\n    return -margin\n"), "static"),
    "fstring": (make("    s = f'{margin!r}'\n    return -margin\n"), "static"),
    "eval_exec": (make("    eval('1')\n    exec('x = 1')\n    return -margin\n"), "static"),
    "builtins_import": (make("    m = __import__('os')\n    return -margin\n"), "static"),
    "module_alias": (make("    t = torch\n    return t.exp(-margin)\n"), "static"),
    "global_stmt": (make("    global counter\n    counter = 1\n    return -margin\n"), "static"),
    "class_def": ("import torch\n\n\nclass Evil:\n    pass\n\n\n" + SIG + "    return -policy_chosen_logps\n",
                  "static"),
    "decorator": ("import torch\n\n\n@torch.no_grad()\n" + SIG + "    return -policy_chosen_logps\n", "static"),
    "infinite_loop": (make("    while True:\n        margin = margin + 0\n    return margin\n"), "speed"),
    "memory_bomb": (make("    big = margin.repeat(2 ** 40)\n    return -F.logsigmoid(beta * margin)\n"), "memory"),
    "memory_bomb_alloc": (make("    big = margin.new_ones((2 ** 20, 2 ** 20))\n"
                               "    return -F.logsigmoid(beta * margin) + big.sum() * 0\n"), "memory"),
}
