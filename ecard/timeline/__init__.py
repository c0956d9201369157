"""The holder's timeline (issue 17): the whole record of use across every card of the person.

Reads the other domains' tables; nothing imports it."""
