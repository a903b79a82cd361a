"""Models of a small shop, showing nested models and validators."""

from modelkit import BoolField, FloatField, IntField, ListField, Model, ModelField, StrField, validator
from modelkit.fields import DateField
from modelkit.validators import is_email, is_slug


class Address(Model):
    """A postal address."""

    street = StrField(min_length=1)
    city = StrField(min_length=1)
    postcode = StrField(pattern=r"[0-9A-Z -]{3,10}")
    country = StrField(default="NL", choices=["NL", "BE", "DE", "FR"])


class Customer(Model):
    """Someone who can place orders."""

    email = StrField()
    name = StrField(max_length=80)
    address = ModelField(Address, nullable=True, default=None)
    newsletter = BoolField(default=False)

    @validator("email")
    def check_email(value):
        """Normalise and check the address."""
        return is_email(value)


class Product(Model):
    """Something for sale."""

    slug = StrField()
    title = StrField(max_length=120)
    price = FloatField()
    stock = IntField(ge=0, default=0)

    @validator("slug")
    def check_slug(value):
        """Slugs appear in URLs."""
        return is_slug(value)


class OrderLine(Model):
    """One product and its quantity in an order."""

    product = StrField()
    quantity = IntField(ge=1)
    unit_price = FloatField()

    def total(self) -> float:
        """Quantity times unit price."""
        return self.quantity * self.unit_price


class Order(Model):
    """A customer's order."""

    customer = ModelField(Customer)
    lines = ListField(ModelField(OrderLine), min_items=1)
    placed_on = DateField()
    paid = BoolField(default=False)

    def total(self) -> float:
        """Sum of every line's total."""
        return round(sum(line.total() for line in self.lines), 2)
