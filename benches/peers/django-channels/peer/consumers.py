"""The subscriber side: every WebSocket on /ws joins the group "t" (the Channels tutorial's
idiom: group_add on connect, group_discard on disconnect, a handler per event type)."""

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "t"


class BroadcastConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        pass  # subscribers only receive

    async def broadcast_message(self, event):
        """group_send(GROUP, {"type": "broadcast.message", "text": ...}) lands here."""
        await self.send(text_data=event["text"])


class EchoConsumer(AsyncWebsocketConsumer):
    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)
