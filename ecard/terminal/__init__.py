"""The terminal side of the one-card service: the chip card's APDU protocol as pure cores.

``apdu`` and ``tlv`` are the ISO 7816-4 codecs, ``card_model`` the social security card
application (SSSE) as terminals address it, ``virtual_card`` a card that answers like one,
``psam`` the platform's half of card authentication, ``records`` signed offline acceptance records
and their reconciliation, and ``vpcd`` the bridge that plugs the virtual card into a real PC/SC
stack.  Everything but ``vpcd`` is pure: no I/O, no framework.
"""
