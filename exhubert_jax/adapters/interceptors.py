"""Adapters as flax method interceptors: how a method's `intercept` is built, and installing a config's adapters.

An adapted model runs inside `installed(config.adapters)` (adapters.wrapper.Adapted): every recorded method with an
`intercept` wraps the module calls it targets, so the model's code never names a method. `after(select, fn)` builds the usual kind of intercept: `fn`
replaces the output of each call `select` accepts, and may create parameters in the intercepted module's scope.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import flax.linen as nn

from exhubert_jax.adapters.registry import TARGETS, lookup, parse_spec

Select = Callable[[nn.module.InterceptorContext, tuple, dict], bool]
Rewrite = Callable[[nn.Module, tuple, Any, dict], Any]


def after(select: Select, fn: Rewrite) -> Callable[[dict], Callable]:
    """An intercept: for options, a flax interceptor that passes calls through and rewrites the output of the
    calls `select(context, args, options)` accepts to `fn(module, args, output, options)`."""
    def intercept(options: dict) -> Callable:
        def interceptor(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            return fn(context.module, args, out, options) if select(context, args, options) else out
        return interceptor
    return intercept


def dense_targets(context: nn.module.InterceptorContext, args: tuple, options: dict) -> bool:
    """A call of one of the projections options['targets'] names (adapter_spec.TARGETS)."""
    wanted = {TARGETS[t] for t in options["targets"]}
    return (isinstance(context.module, nn.Dense) and context.method_name == "__call__"
            and tuple(context.module.path[-2:]) in wanted)


@contextlib.contextmanager
def installed(specs: Sequence[str]) -> Iterator[None]:
    """The interceptor of every adapter spec installed, nested by the methods' `order` (lower: nearer the module)."""
    methods = [(lookup(name), options) for name, options in map(parse_spec, specs)]
    hooks = sorted(((m.order, m.intercept(options)) for m, options in methods if m.intercept is not None),
                   key=lambda pair: -pair[0])
    with contextlib.ExitStack() as stack:
        for _, interceptor in hooks:
            stack.enter_context(nn.intercept_methods(interceptor))
        yield
