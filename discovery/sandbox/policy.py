"""What candidate code may name: allowlists of pure-math module functions, tensor methods and builtins."""

from __future__ import annotations

_ELEMENTWISE = (
    "abs", "exp", "exp2", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "square", "pow",
    "sigmoid", "tanh", "sinh", "cosh", "asinh", "atan", "atan2", "sin", "cos", "erf", "erfc", "lgamma",
    "digamma", "sign", "sgn", "neg", "negative", "reciprocal", "relu", "clamp", "clamp_min", "clamp_max", "clip",
    "maximum", "minimum", "where", "logaddexp", "logsumexp", "heaviside", "floor", "ceil", "round", "frac",
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "lerp", "xlogy",
    "isfinite", "isnan", "isinf", "nan_to_num", "gt", "lt", "ge", "le", "eq", "ne",
    "logical_and", "logical_or", "logical_not", "logical_xor",
)
_REDUCTIONS = ("mean", "sum", "std", "var", "max", "min", "amax", "amin", "median", "quantile", "prod",
               "cumsum", "sort", "argsort", "softmax", "log_softmax", "norm", "all", "any", "topk")

TORCH_FUNCTIONS = frozenset(_ELEMENTWISE + _REDUCTIONS + (
    "zeros_like", "ones_like", "full_like", "tensor", "as_tensor", "stack", "cat", "finfo", "arange",
    "float32", "float64", "float16", "bfloat16", "bool", "long", "int64", "int32", "pi", "e", "inf", "nan",
    "special.expit", "special.logit", "special.log_ndtr", "special.ndtr", "special.xlogy", "special.erf",
    "special.log1p", "special.expm1", "special.exp2", "special.entr", "special.softmax",
    "special.log_softmax", "special.logsumexp", "special.i0",
    "nn.functional.logsigmoid", "nn.functional.softplus", "nn.functional.relu", "nn.functional.sigmoid",
))
F_FUNCTIONS = frozenset((
    "logsigmoid", "softplus", "relu", "relu6", "sigmoid", "tanh", "silu", "gelu", "elu", "selu", "celu",
    "leaky_relu", "hardtanh", "hardsigmoid", "softsign", "tanhshrink", "softmax", "log_softmax", "mish",
    "binary_cross_entropy_with_logits", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
    "soft_margin_loss", "normalize",
))
MATH_FUNCTIONS = frozenset((
    "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "pow", "tanh", "sinh", "cosh", "atan", "sin",
    "cos", "erf", "erfc", "lgamma", "fabs", "floor", "ceil", "isfinite", "isnan", "isinf", "copysign",
    "pi", "e", "tau", "inf", "nan",
))
MODULE_FUNCTIONS = {"torch": TORCH_FUNCTIONS, "F": F_FUNCTIONS, "math": MATH_FUNCTIONS}

TENSOR_METHODS = frozenset(_ELEMENTWISE + _REDUCTIONS + (
    "float", "double", "half", "bfloat16", "to", "type_as", "detach", "clone", "contiguous",
    "reshape", "view", "view_as", "squeeze", "unsqueeze", "flatten", "expand", "expand_as", "repeat",
    "masked_fill", "new_tensor", "new_zeros", "new_ones", "new_full",
    "bool", "long", "int", "values", "indices",
    # attributes that are plain data (of a finfo, or a transpose)
    "T", "eps", "tiny",
))
# Introspection: what would let a loss tell being checked from being trained (batch size, grad state,
# dtype, device, graph) or read a value back into Python. Refused; the values are all a loss needs.
INTROSPECTION = frozenset((
    "shape", "size", "numel", "nelement", "dim", "ndim", "ndimension", "requires_grad", "is_leaf", "grad",
    "grad_fn", "data", "device", "dtype", "is_cuda", "is_cpu", "is_floating_point", "is_complex",
    "is_contiguous", "item", "tolist", "stride", "storage_offset", "layout", "names", "output_nr",
    "retains_grad", "is_inference", "is_sparse", "is_quantized", "is_meta", "itemsize", "element_size",
    "nbytes", "get_device", "untyped_storage", "data_ptr",
))
INTROSPECTION_BUILTINS = frozenset(("len", "isinstance", "type", "id", "hash", "iter", "next", "enumerate"))
INTROSPECTION_ADVICE = ("a loss sees its inputs only as values (no shape, size, dtype, device or grad state); "
                        "use `torch.ones_like(x).mean()`-style tensor operations and let them broadcast")
SAFE_BUILTINS = frozenset((
    "abs", "min", "max", "sum", "range", "float", "int", "bool", "round", "pow", "divmod",
    "True", "False", "None", "ValueError", "ArithmeticError", "ZeroDivisionError", "RuntimeError",
))
DANGEROUS_NAMES = frozenset((
    "exec", "eval", "compile", "open", "__import__", "getattr", "setattr", "delattr", "hasattr", "globals",
    "locals", "vars", "input", "breakpoint", "help", "dir", "type", "object", "super", "memoryview",
    "classmethod", "staticmethod", "property", "print", "exit", "quit", "id", "format", "repr", "str",
    "bytes", "bytearray", "chr", "ord", "iter", "next", "callable", "issubclass", "os", "sys", "subprocess",
    "socket", "pickle", "importlib", "builtins", "numpy", "np", "len", "isinstance", "hash", "enumerate",
    "zip", "list", "tuple", "dict", "set", "frozenset", "map", "filter", "sorted", "reversed", "all", "any",
    "slice", "ascii", "bin", "hex", "oct", "complex", "aiter", "anext", "license", "credits", "copyright",
))
FORBIDDEN_KEYWORDS = frozenset(("out",))
