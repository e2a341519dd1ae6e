"""Word tables for perturb.py: per kind, the swaps that change a question's answer and the
rewrites that keep it. Data only; every swap is listed one way and applied both ways where the
table says so (`both`), so "on -> off" also gives "off -> on".
"""

from __future__ import annotations

KINDS = (
    "negation",
    "number",
    "time",
    "date",
    "unit",
    "entity",
    "direction",
    "comparative",
    "quantifier",
    "scope",
)


def both(pairs: str) -> tuple[tuple[str, str], ...]:
    """'a b, c d' -> (a, b), (b, a), (c, d), (d, c)."""
    out: list[tuple[str, str]] = []
    for item in pairs.split(","):
        a, b = (part.replace("_", " ") for part in item.split())
        out += [(a, b), (b, a)]
    return tuple(out)


def one_way(pairs: str) -> tuple[tuple[str, str], ...]:
    """'a b, c d' -> (a, b), (c, d); '_' stands for a space inside a phrase."""
    return tuple(
        (a.replace("_", " "), b.replace("_", " "))
        for a, b in (item.split() for item in pairs.split(","))
    )


# Meaning-changing swaps (look-alikes). Phrases before single words: the first rule that
# applies is used for the kind, so the more specific comes first.
CHANGE: dict[str, tuple[tuple[str, str], ...]] = {
    "negation": both(
        "enable disable, open close, include exclude, accept reject, allow block, "
        "safe dangerous, legal illegal, possible impossible, true false, good bad, "
        "right wrong, cheap expensive, easy hard, lock unlock, love hate, pass fail, "
        "import export, upload download, send receive, hot cold, positive negative, "
        "add remove, buy sell, win lose, start stop, take avoid, increase decrease, "
        "healthy unhealthy, correct incorrect, happy sad, like dislike, agree disagree"
    )
    + one_way("not_ _, never ever, no_longer still"),
    "time": both("am pm, a.m. p.m., morning evening, noon midnight, AM PM, tonight tomorrow_night"),
    "date": both(
        "Monday Friday, Tuesday Thursday, Wednesday Saturday, Sunday Monday, "
        "January March, February August, April October, May June, July December, "
        "September November, today tomorrow, yesterday today, weekend weekday, "
        "this_week next_week, last_year next_year, this_month last_month"
    ),
    "unit": both(
        "km miles, kilometers miles, kilometres miles, kg pounds, kilograms pounds, "
        "celsius fahrenheit, Celsius Fahrenheit, dollars euros, USD EUR, meters feet, "
        "metres feet, liters gallons, litres gallons, cups grams, GB MB, gigabytes megabytes, "
        "hours minutes, days weeks, inches centimeters, ounces grams, rupees dollars, yen pesos"
    ),
    "entity": both(
        "France Spain, Germany Italy, India China, Japan Korea, Canada Mexico, Brazil Argentina, "
        "Paris Berlin, London Madrid, Tokyo Seoul, Delhi Mumbai, Sydney Melbourne, "
        "Python Java, JavaScript Ruby, iPhone Android, Apple Samsung, Google Microsoft, "
        "Amazon Walmart, Facebook Twitter, Trump Obama, Clinton Bush, Hillary Trump, "
        "Einstein Newton, Harvard Stanford, MIT Caltech, Netflix Hulu, Visa Mastercard, "
        "Christmas Easter, Quora Reddit, America Europe, Windows Linux, Chrome Firefox, "
        "Tesla Ford, Toyota Honda, Mars Venus, Islam Christianity, Hindi Urdu, English French"
    ),
    "direction": both(
        "up down, north south, east west, left right, incoming outgoing, inbound outbound, "
        "upstairs downstairs, forward backward, into out_of, lend borrow, teach learn, "
        "debit credit, deposit withdraw, sender recipient, employer employee, parent child"
    ),
    "comparative": both(
        "better worse, more less, bigger smaller, biggest smallest, best worst, higher lower, "
        "highest lowest, faster slower, fastest slowest, cheapest priciest, most least, "
        "largest smallest, longest shortest, older younger, oldest youngest, richest poorest, "
        "strongest weakest, easiest hardest, greater lesser, larger smaller, stronger weaker, "
        "easier harder, cheaper pricier, top bottom, heavier lighter, warmer colder"
    ),
    "quantifier": both(
        "all some, always never, many few, everyone nobody, everything nothing, every no, "
        "both neither, everybody nobody, often rarely, most_people few_people"
    ),
    "scope": both(
        "before after, with without, inside outside, above below, over under, since until, "
        "including excluding, first last, early late, during after, within beyond, "
        "domestic international, online offline, monthly yearly, daily weekly"
    ),
}

# Meaning-keeping rewrites of the same kind (paraphrases that must still hit).
KEEP: dict[str, tuple[tuple[str, str], ...]] = {
    "negation": both(
        "do_not don't, cannot can't, is_not isn't, does_not doesn't, are_not aren't, "
        "will_not won't, should_not shouldn't, turn_on switch_on, turn_off switch_off, "
        "not_possible impossible, not_legal illegal, not_working broken"
    ),
    "number": both(
        "1 one, 2 two, 3 three, 4 four, 5 five, 6 six, 7 seven, 8 eight, 9 nine, 10 ten, "
        "12 twelve, 20 twenty, 100 a_hundred, 1000 a_thousand, 50% half"
    ),
    "time": both(
        "pm p.m., am a.m., noon 12_pm, midnight 12_am, tonight this_evening, "
        "morning a.m., evening p.m."
    ),
    "date": both(
        "Monday Mon, Tuesday Tues, Wednesday Wed, Thursday Thurs, Friday Fri, Saturday Sat, "
        "Sunday Sun, January Jan, February Feb, September Sept, October Oct, "
        "November Nov, December Dec, tomorrow the_next_day, today this_day"
    ),
    "unit": both(
        "km kilometers, kg kilograms, lbs pounds, mins minutes, hrs hours, GB gigabytes, "
        "USD US_dollars, ml milliliters, cm centimeters, mph miles_per_hour, °C degrees_Celsius"
    ),
    "entity": both(
        "US United_States, USA United_States, UK United_Kingdom, NYC New_York_City, "
        "LA Los_Angeles, EU European_Union, UN United_Nations, Obama Barack_Obama, "
        "Modi Narendra_Modi, Einstein Albert_Einstein, FB Facebook, JS JavaScript"
    ),
    "direction": one_way("upload_to put_on, send_to transfer_to, move_to transfer_to"),
    "comparative": both(
        "bigger larger, biggest largest, cheaper less_expensive, "
        "faster quicker, fastest quickest, smaller tinier, best top, pricier more_expensive"
    ),
    "quantifier": both(
        "every each, everyone everybody, nobody no_one, all_the all_of_the, never not_ever"
    ),
    "scope": both(
        "before prior_to, until till, without with_no, inside within, after following, "
        "during throughout"
    ),
}

# Auxiliaries that take a negation ("should I" -> "shouldn't I"), and back.
NEGATED_AUX = {
    "is": "isn't", "are": "aren't", "can": "can't", "does": "doesn't", "do": "don't",
    "should": "shouldn't", "will": "won't", "was": "wasn't", "could": "couldn't",
    "would": "wouldn't", "did": "didn't", "has": "hasn't", "have": "haven't",
}  # fmt: skip

# Rewrites that keep any question's meaning; used with a kind's feature left untouched.
STYLE = both(
    "What_is What's, How_do_I How_can_I, Can_I Am_I_able_to, what_is what's, "
    "how_do_I how_can_I, Where_can_I Where_do_I, Is_it_possible_to Can_I, "
    "What_are Which_are, I_want_to I'd_like_to, How_much_does How_much_is"
)
