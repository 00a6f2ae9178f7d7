"""The commercial side of app.yaml: an underpinning contract's monthly charge and its service-credit rules
(``agreements[].commercial``), and a service's monthly cost by line (``services[].cost``).

Money is ``Decimal``, never float: amounts may be written as numbers or as quoted text (``"1250.50"``),
each read from its decimal digits as written, and may carry no more decimal places than the currency's
minor unit (ISO 4217, from the ``iso4217`` package: two for EUR, none for JPY, three for BHD).
"""
from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Literal

from iso4217 import Currency
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

MONEY_TEXT = re.compile(r"^-?\d+(\.\d+)?$")


def _money(value) -> Decimal:
    """An amount as written: ``1250``, ``1250.5`` or ``"1250.50"``. A YAML float is read through its
    shortest text (``repr``), which gives back the digits written in the file."""
    if isinstance(value, bool):
        raise ValueError("an amount is a number, like 1250.00")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if not MONEY_TEXT.match(text):
        raise ValueError(f"'{value}' is not an amount like 1250.00")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"'{value}' is not an amount like 1250.00") from None


Money = Annotated[Decimal, BeforeValidator(_money)]
Percent = Annotated[Decimal, BeforeValidator(_money), Field(gt=0, le=100)]


def minor_unit(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 when ISO 4217 gives none, as for gold)."""
    exponent = Currency(currency).exponent
    return 2 if exponent is None else exponent


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half up (away from zero on a tie) to the currency's minor unit: 0.125 EUR → 0.13."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_UP)


def money_text(amount: Decimal, currency: str) -> str:
    """``EUR 1,250.00``: the ISO code and the amount to its minor unit, with thousands separated."""
    places = minor_unit(currency)
    return f"{currency} {round_money(amount, currency):,.{places}f}"


def _currency(value) -> str:
    text = str(value).strip().upper()
    try:
        Currency(text)
    except ValueError:
        raise ValueError(f"'{value}' is not an ISO 4217 currency code, like EUR, GBP or USD") from None
    return text


CurrencyCode = Annotated[str, BeforeValidator(_currency)]


def _places_problem(amount: Decimal, currency: str) -> str | None:
    places = minor_unit(currency)
    if -amount.as_tuple().exponent > places:
        return f"{amount} has more decimal places than {currency}'s {places}"
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreditRule(_Strict):
    """One rule of service credits, on one target of the contract (its metric and priority):
    ``percent_per_point`` — this % of the monthly charge for each percentage point the month's attainment
    fell below the target's goal (fractions of a point count pro rata); or ``per_breach`` — this amount
    for each of the month's breached clocks of the target."""

    metric: Literal["response", "resolution"]
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    percent_per_point: Percent | None = None
    per_breach: Money | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.percent_per_point is None) == (self.per_breach is None):
            raise ValueError("give either percent_per_point (% of the charge per point below goal) or "
                             "per_breach (an amount per breached clock)")
        if self.per_breach is not None and self.per_breach <= 0:
            raise ValueError("per_breach: an amount above zero")
        return self

    @property
    def target_name(self) -> str:
        return f"{self.metric} {self.priority}" if self.priority else self.metric


class CreditCap(_Strict):
    """The most a month's credits can come to: an amount, or a % of the monthly charge."""

    amount: Money | None = None
    percent: Percent | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.amount is None) == (self.percent is None):
            raise ValueError("give either amount or percent (of the monthly charge)")
        if self.amount is not None and self.amount <= 0:
            raise ValueError("amount: an amount above zero")
        return self


class Commercial(_Strict):
    """An underpinning contract's commercial terms: what it costs a month, and what the supplier credits
    back when it misses its targets."""

    charge: Money
    currency: CurrencyCode
    rules: list[CreditRule] = []
    cap: CreditCap | None = None

    @model_validator(mode="after")
    def _amounts_fit_the_currency(self):
        problems = [p for p in (
            _places_problem(self.charge, self.currency),
            *(_places_problem(r.per_breach, self.currency) for r in self.rules if r.per_breach is not None),
            _places_problem(self.cap.amount, self.currency) if self.cap and self.cap.amount is not None else None)
            if p]
        if self.charge <= 0:
            problems.append("charge: an amount above zero")
        if problems:
            raise ValueError("; ".join(problems))
        return self


COST_LINES = ("people", "hardware", "software", "suppliers")


class ServiceCost(_Strict):
    """What a service costs a month, by line, in one currency."""

    currency: CurrencyCode
    people: Money = Decimal(0)
    hardware: Money = Decimal(0)
    software: Money = Decimal(0)
    suppliers: Money = Decimal(0)

    @model_validator(mode="after")
    def _amounts(self):
        problems = [p for line in COST_LINES if (p := _places_problem(getattr(self, line), self.currency))]
        problems += [f"{line}: not below zero" for line in COST_LINES if getattr(self, line) < 0]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def total(self) -> Decimal:
        return sum((getattr(self, line) for line in COST_LINES), Decimal(0))
