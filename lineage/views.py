"""The lineage graph page: a server-rendered SVG, laid out in columns by depth (upstream on the left)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.errors import NotFound
from lineage import graph, selectors
from lineage.models import LineageNode

BOX_WIDTH = 260
BOX_HEIGHT = 70
COLUMN_GAP = 90
ROW_GAP = 26
MARGIN = 24
PAGE_DEPTH = 6

KIND_COLOURS = {
    LineageNode.Kind.DATASET_VERSION: "#e3f2fd",
    LineageNode.Kind.RUN: "#fff3e0",
    LineageNode.Kind.MODEL_VERSION: "#e8f5e9",
    LineageNode.Kind.DEPLOYMENT: "#f3e5f5",
    LineageNode.Kind.ARTIFACT: "#eceff1",
}


def layout(data: dict[str, Any]) -> dict[str, Any]:
    """Positions for every node (one column per depth) and a cubic path per edge."""
    columns: dict[int, list[dict[str, Any]]] = {}
    for node in data["nodes"]:
        columns.setdefault(node["depth"], []).append(node)
    depths = sorted(columns)
    positions: dict[int, tuple[int, int]] = {}
    boxes: list[dict[str, Any]] = []
    tallest = max((len(items) for items in columns.values()), default=1)
    for column_index, depth in enumerate(depths):
        items = sorted(columns[depth], key=lambda item: (item["kind"], item["label"], item["id"]))
        x = MARGIN + column_index * (BOX_WIDTH + COLUMN_GAP)
        offset = (tallest - len(items)) * (BOX_HEIGHT + ROW_GAP) // 2
        for row, node in enumerate(items):
            y = MARGIN + offset + row * (BOX_HEIGHT + ROW_GAP)
            positions[node["id"]] = (x, y)
            label = node["label"] or f"{node['ref']['type']}:{node['ref']['id']}"
            # Keep the end of long labels: "…german_credit_raw@2026-10-01" says more than "s3://demo-ba…".
            boxes.append({**node, "x": x, "y": y, "text_x": x + 10, "title_y": y + 20, "sub_y": y + 39,
                          "links_y": y + 58, "short_label": label if len(label) <= 34 else "…" + label[-33:],
                          "full_label": label, "fill": KIND_COLOURS.get(node["kind"], "#ffffff"),
                          "is_root": node["id"] == data["root"]})
    paths = []
    for edge in data["edges"]:
        if edge["source"] not in positions or edge["target"] not in positions:
            continue
        (sx, sy), (tx, ty) = positions[edge["source"]], positions[edge["target"]]
        x1, y1, x2, y2 = sx + BOX_WIDTH, sy + BOX_HEIGHT // 2, tx, ty + BOX_HEIGHT // 2
        bend = max(30, (x2 - x1) // 2)
        paths.append({"d": f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}",
                      "attestation": edge["attestation"]})
    width = MARGIN * 2 + max(1, len(depths)) * (BOX_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = MARGIN * 2 + tallest * (BOX_HEIGHT + ROW_GAP) - ROW_GAP
    return {"boxes": boxes, "paths": paths, "width": width, "height": height,
            "box_width": BOX_WIDTH, "box_height": BOX_HEIGHT}


def lineage_node_page(request: HttpRequest, node_id: int) -> HttpResponse:
    """Upstream and downstream lineage of one node (typically a model version), drawn as SVG."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not selectors.can_view_lineage(request.user):
        raise PermissionDenied
    try:
        node = selectors.node_get(node_id=node_id, user=request.user)
    except NotFound:
        return render(request, "lineage/node_missing.html", {"node_id": node_id}, status=404)
    data = selectors.lineage_graph(node=node, direction=graph.BOTH, depth=PAGE_DEPTH, max_nodes=400, user=request.user)
    drawing = layout(data)
    nodes_by_id = {n.pk: n for n in LineageNode.objects.filter(pk__in=[box["id"] for box in drawing["boxes"]])}
    for box in drawing["boxes"]:
        lineage_node = nodes_by_id[box["id"]]
        box["record_url"] = selectors.record_url(lineage_node)
        attestations = selectors.attestations_for_subject((lineage_node.ref_type, lineage_node.ref_id),
                                                          user=request.user)
        box["attestation_urls"] = [f"/api/lineage/attestations/{att.pk}/" for att in attestations]
        box["page_url"] = f"/lineage/nodes/{lineage_node.pk}/"
    return render(request, "lineage/node_graph.html", {
        "node": node, "drawing": drawing, "truncated": data["truncated"], "depth": PAGE_DEPTH,
        "kinds": [(kind.label, KIND_COLOURS[kind]) for kind in LineageNode.Kind],
    })
