"""`ingest.rules` conditions are parsed, not pattern-matched: Spark's own SQL parser reads the
text, and every node of the parsed (not yet analysed) expression must be one of a short list of
forms: columns, literals, comparisons, AND/OR/NOT, arithmetic, IN, LIKE, IS NULL, CASE, CAST and
a named list of pure built-in functions. Anything else (a subquery, which could read a file; a
function that calls JVM methods, however it is quoted or commented) is refused with one line
naming the rule, before the expression is analysed or run.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from recsys_spark.errors import RecsysError

# Catalyst node classes a rule may contain (their getSimpleName, as the parser builds them).
NODES = frozenset(
    {
        "UnresolvedAttribute",
        "Literal",
        "And",
        "Or",
        "Not",
        "EqualTo",
        "EqualNullSafe",
        "LessThan",
        "LessThanOrEqual",
        "GreaterThan",
        "GreaterThanOrEqual",
        "Add",
        "Subtract",
        "Multiply",
        "Divide",
        "Remainder",
        "IntegralDivide",
        "UnaryMinus",
        "UnaryPositive",
        "IsNull",
        "IsNotNull",
        "In",
        "Like",
        "ILike",
        "RLike",
        "LikeAny",
        "LikeAll",
        "NotLikeAny",
        "NotLikeAll",
        "Cast",
        "CaseWhen",
        "If",
        "UnresolvedFunction",
        "Alias",
        "UnresolvedAlias",
    }
)
# Pure built-ins a rule may call (lower-case names); none reads files, calls the JVM or has side effects.
FUNCTIONS = frozenset(
    {
        "abs",
        "between",
        "ceil",
        "ceiling",
        "char_length",
        "character_length",
        "coalesce",
        "concat",
        "contains",
        "date",
        "datediff",
        "day",
        "dayofmonth",
        "dayofweek",
        "endswith",
        "floor",
        "greatest",
        "hour",
        "if",
        "ifnull",
        "isnan",
        "isnotnull",
        "isnull",
        "least",
        "length",
        "like",
        "lower",
        "ltrim",
        "month",
        "nullif",
        "nvl",
        "regexp",
        "regexp_like",
        "rlike",
        "round",
        "rtrim",
        "startswith",
        "substr",
        "substring",
        "to_date",
        "to_timestamp",
        "trim",
        "try_cast",
        "try_to_timestamp",
        "upper",
        "year",
    }
)
_NAMES = {
    "ScalarSubquery": "a subquery",
    "Exists": "a subquery (EXISTS)",
    "ListQuery": "a subquery (IN (SELECT ...))",
    "InSubquery": "a subquery (IN (SELECT ...))",
    "UnresolvedStar": "*",
}


def check_rule(spark: SparkSession, index: int, reason: str, when: str) -> None:
    """Refuse `ingest.rules[index]` unless every node of its parsed condition is allowed."""
    check_condition(spark, f"ingest.rules[{index}] ({reason})", when)


def check_condition(spark: SparkSession, head: str, when: str) -> None:
    """Refuse the condition `when` (set at `head`, which the error names) unless every node of its
    parsed expression is allowed: ingest's rules and recommend.item_filter."""
    allowed = "comparisons, AND/OR/NOT, arithmetic, IN, LIKE, IS NULL, CASE, CAST and pure built-in functions"
    try:
        root = spark._jsparkSession.sessionState().sqlParser().parseExpression(when)
    except Exception as e:  # py4j wraps Spark's ParseException
        first = str(getattr(e, "java_exception", e)).strip().splitlines()[0]
        raise RecsysError(f"{head}: invalid SQL condition {when!r}: {first}") from None
    stack = [root]
    while stack:
        node = stack.pop()
        kind = node.getClass().getSimpleName()
        if kind == "UnresolvedFunction":
            name = str(node.nameParts().last()).lower()
            if name not in FUNCTIONS or node.nameParts().size() != 1:
                raise RecsysError(
                    f"{head}: the function {name}() is not allowed in a rule; allowed: {', '.join(sorted(FUNCTIONS))}"
                )
        elif kind not in NODES:
            raise RecsysError(
                f"{head}: {_NAMES.get(kind, kind)} is not allowed in a rule: write it with the row's columns, "
                f"literals, {allowed}"
            )
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
