"""Tool definitions and schemas shared by the simulator's tool-call and JSON tests."""

from __future__ import annotations

from typing import Any

WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
TIME_PARAMS = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
    "additionalProperties": False,
}


def function_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": parameters,
            "strict": True,
        },
    }


WEATHER = function_tool("get_weather", "Current weather forecast for a city", WEATHER_PARAMS)
CLOCK = function_tool("get_local_time", "Local clock time in a timezone", TIME_PARAMS)
TOOLS = [WEATHER, CLOCK]
SCHEMAS = {"get_weather": WEATHER_PARAMS, "get_local_time": TIME_PARAMS}

# A structured-output schema using $defs, nullable fields, anyOf and arrays.
RECIPE_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "servings": {"type": "integer", "minimum": 1, "maximum": 12},
        "vegetarian": {"type": "boolean"},
        "rating": {"type": ["number", "null"], "minimum": 0, "maximum": 5},
        "course": {"type": "string", "enum": ["starter", "main", "dessert"]},
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2},
        "source": {"anyOf": [{"type": "string", "format": "uri"}, {"type": "null"}]},
    },
    "required": ["title", "servings", "vegetarian", "rating", "course", "steps", "source"],
    "additionalProperties": False,
    "$defs": {
        "step": {
            "type": "object",
            "properties": {"order": {"type": "integer", "minimum": 1}, "text": {"type": "string"}},
            "required": ["order", "text"],
            "additionalProperties": False,
        }
    },
}
RECIPE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "recipe", "schema": RECIPE_SCHEMA, "strict": True},
}
