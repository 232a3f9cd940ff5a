"""Parsing gin files and bindings with user errors as one line: a gin syntax error (or an unbalanced bracket,
which gin reports as a ``tokenize.TokenError`` without the file) becomes a ``paths.ConfigError`` naming the
file (or the binding) and the line, which the CLI prints without a traceback."""

from __future__ import annotations

import tokenize
from typing import Sequence

from tokensift.core.paths import ConfigError


def _where_what(err: Exception, source: str, offset: int = 0) -> str:
  loc = err.args[1] if len(err.args) > 1 else None
  if isinstance(err, tokenize.TokenError):  # args: (message, (line, column))
    line = loc[0] - offset if isinstance(loc, tuple) and loc else "?"
    message = err.args[0] if err.args else str(err)  # (typeshed types TokenError's args as empty)
    return f"gin syntax error in {source}, line {line}: {message}"
  filename = getattr(loc, "filename", None)
  if filename:  # an included file
    source = f"gin file {filename!r}"
  line = getattr(loc, "line_num", None) or getattr(err, "lineno", None)
  line = "?" if line is None else line - offset
  content = (getattr(loc, "line_content", None) or getattr(err, "text", None) or "").strip()
  return f"gin syntax error in {source}, line {line}: {err.args[0] if err.args else err}" + (
    f": {content!r}" if content else ""
  )


def parse_files_and_bindings(files: Sequence[str], bindings: Sequence[str], preamble: Sequence[str] = ()) -> None:
  """``gin.parse_config_files_and_bindings(files, [*preamble, *bindings])`` (files in order, then the bindings,
  then finalize), one at a time so that a syntax error names its file; a binding's line is counted from the
  first of ``bindings`` (``preamble``: import lines the caller adds). Raises ``ConfigError``."""
  import gin

  for f in files:
    try:
      gin.parse_config_file(f)
    except (SyntaxError, tokenize.TokenError) as e:
      raise ConfigError(_where_what(e, f"gin file {f!r}")) from None
    except (AttributeError, ImportError) as e:  # a selector or module that does not exist (gin says where)
      raise ConfigError(f"gin file {f!r}: {e}") from None
  try:
    gin.parse_config([*preamble, *bindings] if bindings else [])
  except (SyntaxError, tokenize.TokenError) as e:
    raise ConfigError(_where_what(e, "the --gin bindings", len(preamble) if bindings else 0)) from None
  except (AttributeError, ImportError) as e:
    raise ConfigError(f"the --gin bindings: {e}") from None
  gin.finalize()
