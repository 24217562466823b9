# The usage example from the DadaCat persistence design, copied verbatim.
# ruff: noqa
from conversation.models import Message
from conversation.storage import DynamoDBStorage
from conversation.manager import ConversationManager

# Initialize storage and manager
storage = DynamoDBStorage(table_name='DadaCatConversations')
manager = ConversationManager(storage=storage)

# Add a user message
manager.add_user_message(user_id='+1234567890', content='Hello DadaCat!')

# Add an assistant response
manager.add_assistant_message(user_id='+1234567890', content='meow, human!')

# Get the conversation history
conversation = manager.get_or_create_conversation(user_id='+1234567890')
formatted_history = conversation.get_formatted_history()

# Reset the conversation
manager.reset_conversation(user_id='+1234567890')
