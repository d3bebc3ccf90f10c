from dataclasses import dataclass


@dataclass
class Item:
    """A product on a shelf."""

    name: str
    price: float
    quantity: int = 0

    def total_value(self) -> float:
        return self.price * self.quantity
