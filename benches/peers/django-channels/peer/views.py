"""The publisher side: an async Django view that hands the body to the channel layer."""

from channels.layers import get_channel_layer
from django.http import HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from .consumers import GROUP

_seq = 0


@csrf_exempt
async def publish(request, rest=""):
    global _seq
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    _seq += 1  # one event loop: no lock needed
    await get_channel_layer().group_send(
        GROUP, {"type": "broadcast.message", "text": request.body.decode("utf-8")}
    )
    return HttpResponse(f'{{"seq":{_seq}}}', content_type="application/json")


async def healthz(request):
    return HttpResponse("ok", content_type="text/plain")
