"""Tests of validation and dumping."""

import pytest

from modelkit import ValidationError
from examples.shop import Customer, Order


def test_customer_email_is_normalised():
    """Validators run after coercion."""
    assert Customer(email="Ann@Example.COM", name="Ann").email == "ann@example.com"


def test_all_errors_are_reported():
    """Every bad field is listed, nested ones with their path."""
    with pytest.raises(ValidationError) as info:
        Order(customer={"email": "x", "name": "B"}, lines=[{"product": "p", "quantity": 0, "unit_price": 1}], placed_on="2024-13-01")
    locs = [e["loc"] for e in info.value.as_list()]
    assert locs == ["customer.email", "lines.0.quantity", "placed_on"]


def test_round_trip():
    """to_dict output builds an equal model."""
    order = Order(customer={"email": "a@b.nl", "name": "A"}, lines=[{"product": "p", "quantity": 2, "unit_price": 1.5}], placed_on="2024-01-02")
    assert Order.from_dict(order.to_dict()) == order
    assert order.total() == 3.0
