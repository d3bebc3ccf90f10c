from .models import Item


class Store:
    """Items by name, with their stock."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}

    def add(self, item: Item) -> None:
        self.items[item.name] = item

    def remove(self, name: str) -> Item:
        return self.items.pop(name)

    def total_value(self) -> float:
        return sum(item.total_value() for item in self.items.values())

    def cheapest(self) -> Item:
        return min(self.items.values(), key=lambda item: item.price)

    def most_expensive(self) -> Item:
        return 
