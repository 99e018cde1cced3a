# The confirmation mail in English, the fallback for every other language: a key missing from
# another catalogue is taken from here (and the catalogue test fails).
subject = Your order { $order_id } is confirmed
preheader = Thank you! Order { $order_id } is confirmed.
heading = Your order is confirmed
greeting = Hi { $name },
intro = Thank you for your order. We have received it and it is confirmed.
order-number = Order number
total = Total
estimated-delivery = Estimated delivery
items = Your items
item = Item
quantity = Qty
price = Price
each = { $price } each
status-link = See your order's status
status-text = Follow your order at:
closing = We will let you know when it ships.
