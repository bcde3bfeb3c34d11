"""Offline concept explanations: a small built-in set of Python concepts, picked by the
words of the question."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Concept:
    name: str
    keywords: tuple[str, ...]
    explanation: str
    example: str
    pitfall: str

    def render(self) -> str:
        return (
            f"{self.name}: {self.explanation}\n\nExample:\n```python\n{self.example}\n```\n\n"
            f"Common mistake: {self.pitfall}"
        )


CONCEPTS: tuple[Concept, ...] = (
    Concept(
        "Lists",
        ("list", "lists", "append", "array"),
        "a list is an ordered, changeable sequence of values. Items are reached by position "
        "(from 0), and the list can grow and shrink.",
        "scores = [3, 5, 8]\nscores.append(13)\n"
        "print(scores[0], scores[-1], len(scores))  # 3 13 4",
        "`b = a` does not copy a list: both names point to the same list. Use `a.copy()`.",
    ),
    Concept(
        "Dictionaries",
        ("dict", "dictionary", "dictionaries", "key", "keys", "mapping"),
        "a dict maps keys to values; looking a value up by its key is fast whatever the size.",
        'ages = {"ada": 36, "alan": 41}\nages["grace"] = 85\nprint(ages.get("bob", 0))  # 0',
        "`ages[key]` raises KeyError for a missing key; use `ages.get(key, default)`.",
    ),
    Concept(
        "Tuples",
        ("tuple", "tuples", "immutable", "unpacking"),
        "a tuple is an ordered sequence that cannot be changed; good for fixed groups of values.",
        "point = (3, 4)\nx, y = point  # unpacking\nprint(x + y)  # 7",
        "A one-item tuple needs a comma: `(5,)`; `(5)` is just the number 5.",
    ),
    Concept(
        "Sets",
        ("set", "sets", "unique", "duplicates"),
        "a set holds unique values with no order; membership tests are fast.",
        "seen = {1, 2, 2, 3}\nprint(seen, 2 in seen)  # {1, 2, 3} True",
        "`{}` is an empty dict, not a set; write `set()`.",
    ),
    Concept(
        "For loops",
        ("for", "loop", "loops", "iterate", "iteration", "enumerate", "range"),
        "a for loop runs its block once for each item of a sequence or other iterable.",
        'for index, name in enumerate(["ada", "alan"]):\n    print(index, name)',
        "Changing a list while looping over it skips items; loop over a copy instead.",
    ),
    Concept(
        "While loops",
        ("while", "infinite", "until"),
        "a while loop repeats its block as long as its condition is true.",
        "n = 3\nwhile n > 0:\n    print(n)\n    n -= 1",
        "Forgetting to change the condition's variable makes the loop run forever.",
    ),
    Concept(
        "Functions",
        ("function", "functions", "def", "return", "parameter", "argument", "arguments"),
        "a function is a named, reusable block: it takes parameters and returns a value.",
        "def area(width, height=1):\n    return width * height\n\nprint(area(3, 4))  # 12",
        "A function without `return` returns None; printing inside is not returning.",
    ),
    Concept(
        "Classes",
        ("class", "classes", "object", "objects", "self", "init", "method", "oop"),
        "a class describes a kind of object: its data (attributes) and behaviour (methods). "
        "`__init__` sets up each new object; `self` is the object itself.",
        "class Dog:\n    def __init__(self, name):\n        self.name = name\n\n"
        '    def speak(self):\n        return f"{self.name} says woof"\n\n'
        'print(Dog("Rex").speak())',
        "Forgetting `self` as the first parameter of a method.",
    ),
    Concept(
        "List comprehensions",
        ("comprehension", "comprehensions", "list comprehension", "list comprehensions"),
        "a comprehension builds a list (or set, dict) from another iterable in one expression.",
        "squares = [n * n for n in range(5) if n % 2 == 0]  # [0, 4, 16]",
        "Very long comprehensions are hard to read; use a loop when it needs more than a line.",
    ),
    Concept(
        "Generators",
        ("generator", "generators", "yield", "lazy"),
        "a generator function uses `yield` to produce values one at a time, only when asked.",
        "def countdown(n):\n    while n > 0:\n        yield n\n        n -= 1\n\n"
        "print(list(countdown(3)))  # [3, 2, 1]",
        "A generator can be consumed only once.",
    ),
    Concept(
        "Decorators",
        ("decorator", "decorators", "wrapper", "@"),
        "a decorator is a function that takes a function and returns a changed one; "
        "`@name` above a def applies it.",
        "import functools\n\ndef shout(func):\n    @functools.wraps(func)\n"
        "    def wrapper(*args):\n        return func(*args).upper()\n    return wrapper\n\n"
        '@shout\ndef greet(name):\n    return f"hi {name}"',
        "Forgetting `functools.wraps`, which loses the function's name and docstring.",
    ),
    Concept(
        "Exceptions",
        ("exception", "exceptions", "try", "except", "error", "errors", "raise", "finally"),
        "exceptions signal errors; `try`/`except` handles the ones you expect, `raise` "
        "signals your own, `finally` always runs.",
        'try:\n    number = int("abc")\nexcept ValueError:\n    number = 0',
        "A bare `except:` hides every error, including your own bugs.",
    ),
    Concept(
        "Recursion",
        ("recursion", "recursive", "recurse", "factorial", "fibonacci"),
        "a recursive function calls itself on a smaller problem until it reaches a base case.",
        "def factorial(n):\n    if n <= 1:\n        return 1\n    return n * factorial(n - 1)",
        "A missing or unreachable base case ends in RecursionError.",
    ),
    Concept(
        "Strings and f-strings",
        ("string", "strings", "str", "fstring", "f-string", "format", "formatting", "text"),
        "strings are immutable text; f-strings put values into text with `{...}`.",
        'name, score = "Ada", 9.5\nprint(f"{name} scored {score:.1f}")',
        "String methods return a new string: `s.upper()` does not change `s`.",
    ),
    Concept(
        "Slicing",
        ("slice", "slicing", "slices", "substring"),
        "`seq[start:stop:step]` takes part of a list, tuple or string; stop is not included.",
        'word = "python"\nprint(word[1:4], word[::-1])  # yth nohtyp',
        "Slices never raise IndexError; an out-of-range slice is just shorter.",
    ),
    Concept(
        "Variables and scope",
        ("variable", "variables", "scope", "global", "local", "nonlocal"),
        "a variable is a name for a value; names assigned inside a function are local to it.",
        "count = 0\n\ndef increment(value):\n    return value + 1\n\ncount = increment(count)",
        "Assigning to a global name inside a function makes a new local one "
        "(UnboundLocalError when it is read first).",
    ),
    Concept(
        "Modules and imports",
        ("module", "modules", "import", "imports", "package", "packages", "pip"),
        "a module is a .py file; `import` loads it once and gives access to its names.",
        "import math\nfrom pathlib import Path\n\nprint(math.sqrt(16), Path.cwd())",
        "Naming your own file like a library (random.py, math.py) hides the real one.",
    ),
    Concept(
        "Lambda functions",
        ("lambda", "anonymous"),
        "`lambda args: expression` is a small unnamed function, handy as a key or callback.",
        'words = ["pear", "fig", "banana"]\nprint(sorted(words, key=lambda w: len(w)))',
        "A lambda holds one expression only; use def for anything longer.",
    ),
)

_WORDS = re.compile(r"[a-z_@-]+")


def find_concept(text: str) -> Concept | None:
    """The concept whose keywords the text mentions most (None: no match). A phrase
    counts once per word, so "list comprehension" beats "list"."""
    lowered = " ".join(_WORDS.findall(text.lower()))
    words = set(lowered.split())
    best, best_score = None, 0
    for concept in CONCEPTS:
        score = 0
        for keyword in concept.keywords:
            if " " in keyword:
                score += len(keyword.split()) if f" {keyword} " in f" {lowered} " else 0
            else:
                score += keyword in words
        if score > best_score:
            best, best_score = concept, score
    return best


def explain(text: str) -> str:
    concept = find_concept(text)
    if concept is not None:
        return concept.render()
    topics = ", ".join(concept.name.lower() for concept in CONCEPTS)
    return (
        "I could not tell which Python concept you are asking about. Offline I can explain: "
        f"{topics}. Ask e.g. 'Explain list comprehensions'."
    )
