from .router import Router as Router, SmartPipe as SmartPipe

__all__: list[str]
