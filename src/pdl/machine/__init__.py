"""The machine pdl measures on: its cores (``cpu``), its memory (``memory``), the facts a result carries
(``host``), and what else competes for it round by round (``contention``)."""
