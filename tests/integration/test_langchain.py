"""LangChain's `langchain-openai` ChatOpenAI pointed at the front door of a real mesh (issue 15,
Must show 6): a second client the project did not write. `bind_tools` gets a tool call back
with parsed arguments; `with_structured_output` gets a pydantic object back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, SecretStr

from shared.mesh import Mesh

pytestmark = pytest.mark.integration


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"21 C in {city}"


class City(BaseModel):
    """A city and the country it is in."""

    name: str
    country: str


def chat_model(mesh: Mesh, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"http://{mesh.address('router_http')}/v1",
        api_key=SecretStr("dev"),
        model="auto",
        max_retries=0,
        timeout=60,
        **options,
    )


def test_bind_tools_gets_a_tool_call_with_parsed_arguments(mesh: Mesh) -> None:
    model = chat_model(mesh).bind_tools([get_weather])
    answer = model.invoke(f"What is the weather in Lisbon? (ref {uuid.uuid4().hex[:8]})")
    assert len(answer.tool_calls) == 1
    call = answer.tool_calls[0]
    assert call["name"] == "get_weather" and call["args"] == {"city": "Lisbon"}
    assert call["id"]


def test_with_structured_output_gets_a_pydantic_object(mesh: Mesh) -> None:
    model = chat_model(mesh).with_structured_output(City)
    city = model.invoke(f"Name a city in Portugal. (ref {uuid.uuid4().hex[:8]})")
    assert isinstance(city, City) and city.name and city.country


def test_streaming_through_langchain_reassembles_the_text(mesh: Mesh) -> None:
    model = chat_model(mesh, streaming=True, stream_usage=True)
    pieces = [chunk.content for chunk in model.stream(f"Explain SSE. ({uuid.uuid4().hex[:8]})")]
    assert "".join(str(piece) for piece in pieces)
